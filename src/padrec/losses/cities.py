"""CITIES' training objective for the embedding-inference function (Jang et al., ICDM 2020)."""

from __future__ import annotations

import torch


def embedding_inference_loss(inferred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between inferred and learned embeddings of head items,
    ``mean_{i, j} (F_φ(C_i)_j − E_ij)²`` (the official code's ``nn.MSELoss()``).

    Args:
        inferred: (B, d) F_φ of a few contexts of B head items.
        target: (B, d) their embeddings E_i in the trained model (constants).
    Returns:
        scalar loss.
    """
    return ((inferred - target) ** 2).mean()
