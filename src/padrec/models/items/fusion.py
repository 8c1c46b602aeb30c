"""Concatenation fusion of two representations (``hybrid``: ID ⊕ text; PAD's alignment expert)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from padrec.models.items.adapters import FusionAdapter, part_adapter
from padrec.models.items.base import (
    ACTIVATIONS,
    ITEM_REPRESENTATIONS,
    ItemContext,
    ItemRepresentation,
    init_linear,
)
from padrec.models.items.id import IDEmbedding, IDItemsConfig
from padrec.models.items.text import TextItemsConfig, TextMLP


@dataclass
class HybridItemsConfig:
    """Settings of the ``hybrid`` representation: ``act(Linear(Dropout([ID(i) ; MLP(text_i)])))``.

    Attributes:
        id: the ID table's settings.
        text: the text MLP's settings.
        fusion_dropout: dropout on the concatenation.
        activation: after the fusion Linear (``gelu``, ``relu``, ``tanh``, ``identity``).
        init: the fusion Linear's initialisation: ``xavier_normal``, ``default`` or
            ``passthrough`` (starts as the ID vector; see :class:`ConcatFusion`).
    """

    id: IDItemsConfig = field(default_factory=IDItemsConfig)
    text: TextItemsConfig = field(default_factory=TextItemsConfig)
    fusion_dropout: float = 0.1
    activation: Literal["gelu", "relu", "tanh", "identity"] = "gelu"
    init: Literal["xavier_normal", "default", "passthrough"] = "xavier_normal"


@ITEM_REPRESENTATIONS.register("hybrid")
class ConcatFusion(ItemRepresentation):
    """PAD's alignment-expert item: ``act(Linear(Dropout([first(ids); second(ids)])))``.

    In the release ``first`` is the ID table and ``second`` the TextMLP, with GELU and
    dropout 0.1. ``pair(ids)`` returns both sides so an alignment loss can read them and
    ``fuse(a, b, ids)`` can combine the same tensors without computing them twice (dropout
    inside the sides would otherwise draw new masks).

    Args:
        first, second: item representations over the same N items.
        dim: d, output width.
        dropout: dropout on the concatenation.
        activation: ``gelu`` (release), ``relu``, ``tanh`` or ``identity``.
        zero_padding: zeros for id 0 (default); False = the release's behaviour.
        init: ``xavier_normal`` (release), ``default`` (PyTorch's), or ``passthrough``: the
            Linear starts as ``[I ; 0]`` (weight 1 from each coordinate of ``first`` to the
            same output coordinate, 0 from ``second``, zero bias), so the fused vector starts
            as ``act(first(ids))`` and a backbone copied from ``first``'s model sees the
            vectors it was trained on (needs ``first.dim == dim``).
    """

    def __init__(
        self,
        first: ItemRepresentation,
        second: ItemRepresentation,
        dim: int,
        dropout: float = 0.1,
        activation: Literal["gelu", "relu", "tanh", "identity"] = "gelu",
        zero_padding: bool = True,
        init: Literal["xavier_normal", "default", "passthrough"] = "xavier_normal",
    ) -> None:
        super().__init__()
        if first.num_items != second.num_items:
            raise ValueError(f"first has {first.num_items} items, second {second.num_items}")
        self.first = first
        self.second = second
        self.num_items = first.num_items
        self.dim = dim
        self.zero_padding = zero_padding
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(first.dim + second.dim, dim)
        self.activation = ACTIVATIONS[activation]()
        if init == "passthrough":
            if first.dim != dim:
                raise ValueError(f"passthrough init needs first.dim == dim, got {first.dim} and {dim}")
            nn.init.eye_(self.linear.weight)  # ones on the diagonal of the first d×d block
            nn.init.zeros_(self.linear.bias)
        elif init in ("xavier_normal", "default"):
            init_linear(self.linear, init)
        else:
            raise ValueError(f"init must be xavier_normal, default or passthrough, got {init!r}")

    def pair(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids: S -> (first(ids): S×d1, second(ids): S×d2)."""
        return self.first(ids), self.second(ids)

    def fuse(
        self, first_vecs: torch.Tensor, second_vecs: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """S×d1, S×d2 (from ``pair``) -> S×d; given ``ids`` (S) and ``zero_padding``, rows of
        id 0 are zeros."""
        out = self.activation(self.linear(self.dropout(torch.cat([first_vecs, second_vecs], dim=-1))))
        if ids is not None and self.zero_padding:
            out = out.masked_fill((ids == 0).unsqueeze(-1), 0.0)
        return out

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S int64 -> S×d (zeros where ids == 0 if ``zero_padding``)."""
        return self.fuse(*self.pair(ids), ids)

    def all(self) -> torch.Tensor:
        """(N+1)×d for every id."""
        out = self.fuse(self.first.all(), self.second.all())
        if self.zero_padding:
            out = torch.cat([out.new_zeros(1, self.dim), out[1:]])
        return out

    def text_adapter(self) -> FusionAdapter | None:
        """Both parts' adapters (an ID part: its trained vectors, zeros for new items) and a
        copy of the fusion layer; None when neither part reads text."""
        if self.first.text_adapter() is None and self.second.text_adapter() is None:
            return None
        return FusionAdapter(
            part_adapter(self.first),
            part_adapter(self.second),
            copy.deepcopy(self.linear),
            copy.deepcopy(self.activation),
        )

    config_class = HybridItemsConfig
    needs_text = True

    @classmethod
    def from_config(cls, config: HybridItemsConfig, context: ItemContext) -> ConcatFusion:
        first = IDEmbedding.from_config(config.id, context)
        second = TextMLP.from_config(config.text, context)
        return cls(
            first, second, context.dim, dropout=config.fusion_dropout, activation=config.activation, init=config.init
        )
