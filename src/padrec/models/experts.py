"""An expert = an item representation feeding a backbone, scored by dot product."""

from __future__ import annotations

import torch
from torch import nn

from padrec.models.backbones.base import Backbone


class Expert(nn.Module):
    """Item representation + backbone; logits are dot products with item vectors.

    ``items`` maps ids of any shape S to S×d and exposes ``all() -> (N+1)×d``.
    """

    def __init__(self, items: nn.Module, backbone: Backbone) -> None:
        super().__init__()
        self.items = items
        self.backbone = backbone

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item ids -> (B, L, d) sequence vectors."""
        return self.backbone(self.items(history), history == 0)

    def sequence_vector(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, d): the output at the last position (histories are left-padded)."""
        return self.encode(history)[:, -1]

    def logits(self, seq: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Dot products of sequence vectors with candidate items.

        Args:
            seq: (B, L, d) sequence vectors.
            ids: (B, L, K) candidate ids.
        Returns:
            (B, L, K) logits.
        """
        return torch.einsum("bld,blkd->blk", seq, self.items(ids))

    def all_logits(self, seq_vec: torch.Tensor, item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d) sequence vectors -> (B, N+1) logits over every item."""
        table = self.items.all() if item_vectors is None else item_vectors
        return seq_vec @ table.t()


class PrecomputedItems(nn.Module):
    """Item vectors frozen into a table: ``forward(ids) -> ids.shape × d``, ``all() -> (N+1)×d``.

    In eval mode any item representation is a fixed function of the id, so serving replaces
    it with this table: no text encoder, MLP or fusion runs per request.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table.detach().clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]

    def all(self) -> torch.Tensor:
        return self.table


def freeze_item_tables(module: nn.Module) -> int:
    """Replace the item representation of every :class:`Expert` inside ``module`` by its table.

    Call in eval mode after loading weights. Returns the number of experts frozen.
    """
    count = 0
    for sub in module.modules():
        if isinstance(sub, Expert) and not isinstance(sub.items, PrecomputedItems):
            with torch.no_grad():
                sub.items = PrecomputedItems(sub.items.all())
            count += 1
    return count
