"""An expert = an item representation feeding a backbone, scored by dot product."""

from __future__ import annotations

import torch
from torch import nn

from padrec.models.backbones.base import Backbone
from padrec.models.items.base import ItemRepresentation


class Expert(nn.Module):
    """Item representation + backbone; logits are dot products with candidate vectors.

    History items go through ``items.history``, candidates through ``items.candidates`` (or
    the ``items.all()`` table for full ranking): the two differ for two-sided
    representations and are the same otherwise.
    """

    def __init__(self, items: ItemRepresentation, backbone: Backbone) -> None:
        super().__init__()
        self.items = items
        self.backbone = backbone

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item ids -> (B, L, d) sequence vectors."""
        return self.backbone(self.items.history(history), history == 0)

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
        return torch.einsum("bld,blkd->blk", seq, self.items.candidates(ids))

    def all_logits(self, seq_vec: torch.Tensor, item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d) sequence vectors -> (B, N+1) logits over every item (``item_vectors``: a
        precomputed (N+1)×d candidate table, default ``items.all()``)."""
        table = self.items.all() if item_vectors is None else item_vectors
        return seq_vec @ table.t()

    def score_all(self, histories: torch.Tensor) -> torch.Tensor:
        """(B, L) histories -> (B, N+1) scores of every item."""
        return self.all_logits(self.sequence_vector(histories))
