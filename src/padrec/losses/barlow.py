"""Barlow Twins between two views of the same rows, and FAERec's per-popularity-group form."""

from __future__ import annotations

import torch

__all__ = ["barlow_twins", "grouped_barlow_twins", "median_split"]


def barlow_twins(a: torch.Tensor, b: torch.Tensor, off_diagonal: float = 0.005, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss of paired rows.

    Each view is standardised per dimension, ``z = (a − mean) / (std + eps)`` (std with
    Bessel's correction, torch's default), ``C = z_aᵀ z_b / n`` (d×d) and
    ``L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²``.

    Args:
        a, b: (n, d) paired rows (n ≥ 2; fewer rows give 0, the std is undefined).
        off_diagonal: λ.
        eps: added to the std.
    Returns:
        scalar loss.
    """
    n = a.shape[0]
    if n < 2:
        return a.new_zeros(())
    za = (a - a.mean(0)) / (a.std(0) + eps)
    zb = (b - b.mean(0)) / (b.std(0) + eps)
    c = za.t() @ zb / n  # d × d
    diag = torch.diagonal(c)
    on = (1 - diag).pow(2).sum()
    off = c.pow(2).sum() - diag.pow(2).sum()
    return on + off_diagonal * off


def median_split(popularity: torch.Tensor) -> torch.Tensor:
    """(n,) popularity -> (n,) bool, True = high group (popularity ≥ the median of these n
    values, the midpoint of the two middle ones when n is even, as ``numpy.median``)."""
    return popularity >= torch.quantile(popularity.double(), 0.5).to(popularity.dtype)


def grouped_barlow_twins(
    a: torch.Tensor,
    b: torch.Tensor,
    popularity: torch.Tensor | None = None,
    off_diagonal: float = 0.005,
    eps: float = 1e-5,
) -> torch.Tensor:
    """FAERec's feature-level alignment: Barlow Twins in the high and the low popularity group
    (split at the median, :func:`median_split`), summed; ``popularity=None`` = one group.

    Args:
        a, b: (n, d) paired rows (ID view, text view).
        popularity: (n,) popularity of each row's item, or None.
    Returns:
        scalar ``L_BT(high) + L_BT(low)``.
    """
    if popularity is None:
        return barlow_twins(a, b, off_diagonal, eps)
    high = median_split(popularity)
    return barlow_twins(a[high], b[high], off_diagonal, eps) + barlow_twins(a[~high], b[~high], off_diagonal, eps)
