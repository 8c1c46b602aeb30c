"""MELT's branch losses and curriculum weights (Kim et al., SIGIR 2023; official code
github.com/rlqja1107/MELT, ``models/MELT_SASRec.py``), as plain tensor functions."""

from __future__ import annotations

import math

import torch


def user_curriculum_weight(length: torch.Tensor, threshold: float, max_len: int, progress: float) -> torch.Tensor:
    """w_u of head users: ``|sin(π/2 · e/e_max + π / (2 (L_max − T_u − 1)) · (|S_u| − T_u − 1))|``.

    Short head users (close to the tail) weigh little at the start and long ones more; the
    phase term π/2 · e/e_max moves every weight towards 1 and past it as training goes on.

    Args:
        length: (B,) |S_u|, the number of items in each head user's window.
        threshold: T_u, the longest training sequence of a tail user.
        max_len: L_max, the longest window (the split's ``max_len``).
        progress: e / e_max in [0, 1).
    Returns:
        (B,) weights in [0, 1]. A span L_max − T_u − 1 below 1 counts as 1.
    """
    span = max(max_len - threshold - 1.0, 1.0)
    return torch.abs(torch.sin(math.pi / 2 * progress + math.pi / (2 * span) * (length - threshold - 1.0)))


def item_curriculum_weight(count: torch.Tensor, threshold: float, span: int, progress: float) -> torch.Tensor:
    """w_i of head items: ``|sin(π/2 · e/e_max + π / (2 s) · (min(n_i, T_i + s) − T_i − 1))|``
    with s = ``span`` (the code's ``i_L_max = T_i + 50`` and its constant π/100 = π/(2·50)).

    Args:
        count: (B,) n_i, each head item's training interactions.
        threshold: T_i, the largest training frequency of a tail item.
        span: s.
        progress: e / e_max in [0, 1).
    Returns:
        (B,) weights in [0, 1].
    """
    n = torch.clamp(count.to(torch.float32), max=threshold + span)
    return torch.abs(torch.sin(math.pi / 2 * progress + math.pi / (2 * span) * (n - threshold - 1.0)))


def weighted_squared_error(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``mean_{b, j} w_b (prediction_bj − target_bj)²`` (MELT's L_u and L_i; the code averages
    over rows and dimensions).

    Args:
        prediction, target: (B, d).
        weight: (B,) per-row curriculum weights.
    Returns:
        scalar loss (0 for B = 0).
    """
    if prediction.shape[0] == 0:
        return prediction.sum() * 0.0
    return (weight.unsqueeze(-1) * (prediction - target) ** 2).mean()
