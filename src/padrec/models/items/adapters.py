"""Text adapters: how an item representation places an item from its text embedding alone.

Serving freezes every item representation into tables (:mod:`padrec.models.items.precomputed`).
A table cannot grow, so each text-based representation also hands serving a small module,
its *text adapter*, that maps the raw text embeddings of items it never saw in training
(M×D, as the run's encoder produced them) to the (candidate, history) vectors it would give
them. ID parts of an item that had no ID vector in training are zeros (the padding row's
"no information"); an item that had one keeps it when only its text changes.
"""

from __future__ import annotations

import torch
from torch import nn


class TextAdapter(nn.Module):
    """Base class: ``forward(text, ids) -> (candidates, history)``.

    Args (of ``forward``):
        text: (M, D) float raw text embeddings.
        ids: (M,) int64 internal ids of those items (ids above the trained catalogue size are
            new items).
    Returns:
        (M, d) candidate vectors and (M, d) history vectors.
    """

    def forward(self, text: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


class TableLookup(nn.Module):
    """Rows of a frozen (N+1)×d table for ids 0..N; zeros for ids beyond N (new items)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table.detach().clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (M,) -> (M, d)."""
        known = ids < self.table.shape[0]
        out = self.table[ids.clamp_max(self.table.shape[0] - 1)]
        return out * known.unsqueeze(-1).to(out.dtype)


class MLPAdapter(TextAdapter):
    """A text MLP with its input normalisation: ``mlp((x - shift) * scale)`` on both sides."""

    def __init__(self, mlp: nn.Module, shift: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.mlp = mlp
        self.register_buffer("shift", shift.detach().clone().float())
        self.register_buffer("scale", scale.detach().clone().float())

    def vectors(self, text: torch.Tensor) -> torch.Tensor:
        """(M, D) raw text -> (M, d)."""
        return self.mlp((text.float() - self.shift) * self.scale)

    def forward(self, text: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.vectors(text)
        return v, v


class FusionAdapter(TextAdapter):
    """Concat fusion ``act(Linear([first; second]))`` whose parts are adapters (text sides) or
    :class:`TableLookup` (ID sides: the trained vector, zeros for new items)."""

    def __init__(self, first: nn.Module, second: nn.Module, linear: nn.Linear, activation: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second
        self.linear, self.activation = linear, activation

    @staticmethod
    def _part(part: nn.Module, text: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return part(text, ids)[0] if isinstance(part, TextAdapter) else part(ids)

    def forward(self, text: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cat = torch.cat([self._part(self.first, text, ids), self._part(self.second, text, ids)], dim=-1)
        v = self.activation(self.linear(cat))
        return v, v


def part_adapter(items: nn.Module) -> nn.Module | None:
    """The adapter of one part of a composite representation: its own text adapter when it has
    one, else a :class:`TableLookup` of its frozen candidate table; None for no part at all."""
    adapter = items.text_adapter()
    if adapter is not None:
        return adapter
    return TableLookup(items.all())
