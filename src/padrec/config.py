"""Typed configuration: dataclasses that document every field and refuse unknown keys.

``from_dict`` turns nested dicts (from YAML or CLI flags) into dataclass instances, checking
types and raising :class:`ConfigError` naming the dotted key on a misspelling or a bad value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the dotted key."""


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and checking types."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys for {cls.__name__}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except KeyError as exc:  # an unknown registered name (backbone, item representation, ...)
        raise ConfigError(f"{where or cls.__name__}: {exc.args[0] if exc.args else exc}") from exc
    except (TypeError, ValueError) as exc:
        message = str(exc)
        head = message.split(" ", 1)[0].rstrip(":")
        if head in fields and where:  # "batch_size must be >= 1" -> "train.batch_size must be >= 1"
            raise ConfigError(f"{where}.{message}") from exc
        raise ConfigError(f"{where or cls.__name__}: {message}") from exc
    return obj


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    phases: tuple[str, ...] | None = None,
    fingerprint: bool = True,
    **metadata: Any,
) -> Any:
    """A dataclass field carrying padrec's metadata.

    Args:
        default, default_factory: as for ``dataclasses.field``.
        phases: the training phases whose results depend on this field (None = every
            phase); a finished phase is reused when the fields it depends on are unchanged.
        fingerprint: False for fields that cannot change a result (progress bars, device,
            thread counts): they never enter a fingerprint.
        metadata: further keys. ``legacy=v`` marks a field added after runs existed: at the
            value ``v``, which does what runs did before the field existed, it is left out of
            fingerprints, so adding an option does not invalidate finished phases.
    """
    meta = {"phases": phases, "fingerprint": fingerprint, **metadata}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def fingerprint_fields(obj: Any, phase: str | None = None) -> dict[str, Any]:
    """The fields of dataclass ``obj`` (as plain values) that enter a fingerprint: those not
    marked ``fingerprint=False`` and, given ``phase``, whose ``phases`` include it (or are None)."""
    out = {}
    for f in dataclasses.fields(obj):
        if not f.metadata.get("fingerprint", True):
            continue
        phases = f.metadata.get("phases")
        if phase is not None and phases is not None and phase not in phases:
            continue
        if "legacy" in f.metadata and getattr(obj, f.name) == f.metadata["legacy"]:
            continue
        out[f.name] = to_dict(getattr(obj, f.name))
    return out


def to_dict(obj: Any) -> Any:
    """Dataclass (possibly nested) -> plain dict suitable for JSON/YAML."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'`` (used for CLI overrides)."""
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"{dotted}: '{p}' is not a section")
    cur[parts[-1]] = value
