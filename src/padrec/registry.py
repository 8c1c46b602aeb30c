"""Name -> class registries so configs and the CLI pick components without edits elsewhere.

Each registry holds classes of one kind (backbones, methods, encoders, ...). ``register``
checks what it is given: the class must subclass the registry's base class and declare a
``config_class`` dataclass, and a name may be taken only once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of classes deriving from ``base``.

    Example::

        BACKBONES = Registry("backbone", Backbone)

        @BACKBONES.register("sasrec")
        class SASRec(Backbone):
            config_class = SASRecConfig
    """

    def __init__(self, kind: str, base: type, require_config: bool = True) -> None:
        self.kind = kind
        self.base = base
        self.require_config = require_config
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        """Decorator registering ``cls`` under ``name`` after checking it."""

        def decorator(cls: type) -> type:
            if not isinstance(cls, type) or not issubclass(cls, self.base):
                raise TypeError(f"{self.kind} '{name}': {cls!r} must subclass {self.base.__name__}")
            if self.require_config:
                cfg = getattr(cls, "config_class", None)
                if cfg is None or not dataclasses.is_dataclass(cfg):
                    raise TypeError(f"{self.kind} '{name}': {cls.__name__}.config_class must be a dataclass")
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' is already registered to {self._classes[name].__name__}")
            self._classes[name] = cls
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    def get(self, name: str) -> type:
        """Return the class registered as ``name``; a clear error lists the known names."""
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "(none)"
            raise KeyError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def build(self, name: str, config: Any = None, **kwargs: Any) -> T:
        """Instantiate ``name`` with a config (dataclass instance, dict, or None for defaults)."""
        from padrec.config import from_dict

        cls = self.get(name)
        cfg_cls = getattr(cls, "config_class", None)
        if cfg_cls is not None:
            if config is None:
                config = cfg_cls()
            elif isinstance(config, dict):
                config = from_dict(cfg_cls, config, where=f"{self.kind}.{name}")
            return cls(config, **kwargs)
        return cls(**kwargs)
