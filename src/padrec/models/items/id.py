"""The learned ID table (``id``): every ID-based model's item representation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from padrec.models.items.base import ITEM_REPRESENTATIONS, ItemContext, ItemRepresentation


@dataclass
class IDItemsConfig:
    """Settings of the ``id`` representation.

    Attributes:
        init: ``normal`` = N(0, init_std) (RecBole) or ``xavier_normal`` (PAD release).
        init_std: std for ``init='normal'``; None = the method's ``init_std``.
    """

    init: Literal["normal", "xavier_normal"] = "normal"
    init_std: float | None = None

    def __post_init__(self) -> None:
        if self.init_std is not None and self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")


@ITEM_REPRESENTATIONS.register("id")
class IDEmbedding(ItemRepresentation):
    """A learned table ``nn.Embedding(N+1, d, padding_idx=0)``; row 0 is zeros and gets no gradient.

    Args:
        num_items: N.
        dim: d.
        init: ``normal`` = N(0, init_std) (RecBole) or ``xavier_normal`` (PAD release).
        init_std: standard deviation for ``init='normal'``.
    """

    def __init__(
        self,
        num_items: int,
        dim: int,
        init: Literal["normal", "xavier_normal"] = "normal",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.dim = dim
        self.embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)
        if init == "normal":
            nn.init.normal_(self.embedding.weight, 0.0, init_std)
        elif init == "xavier_normal":
            nn.init.xavier_normal_(self.embedding.weight)
        else:
            raise ValueError(f"unknown init {init!r}; expected 'normal' or 'xavier_normal'")
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S int64 -> S×d."""
        return self.embedding(ids)

    def all(self) -> torch.Tensor:
        """(N+1)×d, the table itself (row 0 zeros)."""
        return self.embedding.weight

    config_class = IDItemsConfig

    @classmethod
    def from_config(cls, config: IDItemsConfig, context: ItemContext) -> IDEmbedding:
        std = context.init_std if config.init_std is None else config.init_std
        return cls(context.num_items, context.dim, init=config.init, init_std=std)
