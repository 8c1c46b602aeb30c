"""LLM-ESR's retrieval-augmented self-distillation: a user's representation regressed onto the
mean representation of the users most similar to them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["self_distillation_loss"]


def self_distillation_loss(user: torch.Tensor, similar: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``mean over users and dimensions of (u − stopgrad(mean_k u_k))²`` (release ``kd``:
    ``nn.MSELoss`` between the user vector and the detached mean of its similar users').

    Args:
        user: (B, D) the users' representations.
        similar: (B, K, D) representations of each user's K similar users (detached here).
        mask: (B,) bool, the users that take part (None = all).
    Returns:
        scalar loss (0, attached to ``user``, when no user takes part).
    """
    teacher = similar.detach().mean(dim=1)
    if mask is not None:
        if not bool(mask.any()):
            return user.sum() * 0.0
        user, teacher = user[mask], teacher[mask]
    return F.mse_loss(user, teacher)
