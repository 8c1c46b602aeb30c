"""Item representations: modules mapping item ids to d-dimensional vectors, registered by name.

Every representation takes ids of any shape S (0 = padding, 1..N = items). It has two sides:

- ``history(ids) -> S×d``: the vectors of history items, fed to a backbone;
- ``candidates(ids) -> S×d`` and ``all() -> (N+1)×d``: the vectors candidates are scored
  against (dot product with the sequence vector), for sampled and full ranking.

A one-sided representation (ID table, text MLP, concat fusion) returns ``forward(ids)`` on
both sides. A two-sided one (``two_sided = True``; FAERec gates history items but scores
candidates against the ID table in training and ``LayerNorm(E + MLP(x))`` at inference)
overrides ``history``/``candidates``/``all`` and ``all_history``; it may read
``self.training`` to differ between training and inference. Row 0 is zeros unless a
representation is asked to reproduce a release that pushes padding through its layers
(``zero_padding=False``).

Representations register in :data:`ITEM_REPRESENTATIONS` with a config dataclass and a
``from_config(config, context)`` constructor, so a method picks one by name from its config
(``method_config.items``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from padrec.registry import Registry

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def init_linear(module: nn.Module, init: str) -> None:
    """Xavier-normal weights and zero biases for every Linear in ``module`` (PAD release);
    ``default`` keeps PyTorch's initialisation."""
    if init == "default":
        return
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass
class ItemContext:
    """What an item representation may know when it is built.

    Attributes:
        num_items: N (ids 1..N, 0 = padding).
        dim: d, the width of the vectors it returns.
        text_embeddings: frozen (N+1)×D item text embeddings (row 0 zeros), or None.
        init_std: the method's default std for normally initialised ID tables.
    """

    num_items: int
    dim: int
    text_embeddings: torch.Tensor | None = None
    init_std: float = 0.02

    def text(self, who: str) -> torch.Tensor:
        """The text matrix as float32; a clear error when the method was built without it."""
        if self.text_embeddings is None:
            raise ValueError(f"item representation '{who}' needs item text embeddings, and none were given")
        return self.text_embeddings.float()


class ItemRepresentation(nn.Module):
    """Base class: ids -> vectors on a history side and a candidate side (module docstring).

    Attributes:
        num_items: N; valid ids are 0 (padding) .. N.
        dim: d, the width of the vectors returned.
        needs_text: class attribute, True when ``from_config`` reads item text embeddings.
        two_sided: class attribute, True when history and candidate vectors differ.
    """

    num_items: int
    dim: int
    needs_text: ClassVar[bool] = False
    two_sided: ClassVar[bool] = False
    config_class: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any, context: ItemContext) -> ItemRepresentation:  # pragma: no cover
        """Build from the registered config dataclass and the method's :class:`ItemContext`."""
        raise NotImplementedError

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """ids: S int64 -> S×d."""
        raise NotImplementedError

    def history(self, ids: torch.Tensor) -> torch.Tensor:
        """History-side vectors: ids S -> S×d (one-sided: ``forward``)."""
        return self(ids)

    def candidates(self, ids: torch.Tensor) -> torch.Tensor:
        """Candidate-side vectors: ids S -> S×d (one-sided: ``forward``)."""
        return self(ids)

    def all(self) -> torch.Tensor:  # pragma: no cover
        """Candidate vectors of every id 0..N, (N+1)×d, for scoring the whole catalogue."""
        raise NotImplementedError

    def all_history(self) -> torch.Tensor:
        """History vectors of every id 0..N, (N+1)×d (one-sided: ``all()``), for serving tables."""
        return self.all()

    def text_adapter(self) -> nn.Module | None:
        """A :class:`~padrec.models.items.adapters.TextAdapter` giving items this representation
        never saw their vectors from their text embeddings alone (serving's new items), or None
        when it cannot (an ID table). Call in eval mode; the adapter copies what it needs."""
        return None


ITEM_REPRESENTATIONS: Registry[ItemRepresentation] = Registry("item representation", ItemRepresentation)


def build_items(name: str, config: Any, context: ItemContext) -> ItemRepresentation:
    """Build the registered representation ``name`` from a config dict (or dataclass, or None)."""
    from padrec.config import from_dict

    cls = ITEM_REPRESENTATIONS.get(name)
    if config is None or isinstance(config, dict):
        config = from_dict(cls.config_class, config or {}, where=f"items_config ({name})")
    return cls.from_config(config, context)


def items_config(name: str, config: dict[str, Any]) -> Any:
    """Check ``config`` against representation ``name``'s config class; returns the dataclass."""
    from padrec.config import from_dict

    return from_dict(ITEM_REPRESENTATIONS.get(name).config_class, config, where=f"items_config ({name})")
