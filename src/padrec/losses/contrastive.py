"""Contrastive alignment: cosine-similarity InfoNCE between paired text-side and ID-side rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from padrec.losses.pairwise import flatten_pair

__all__ = ["info_nce", "item_info_nce"]


def info_nce(
    x: torch.Tensor,
    y: torch.Tensor,
    temperature: float = 0.07,
    symmetric: bool = True,
    mask: torch.Tensor | None = None,
    dedupe_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cosine-similarity InfoNCE with the paired row as the positive.

    S_ij = cos(x_i, y_j) / τ over the n valid rows; the x→y loss is
    ``−(1/n) Σ_i log softmax_j(S_i·)[i]``, the y→x loss the same on Sᵀ, and ``symmetric=True``
    returns their mean. With ``dedupe_ids`` (item id per slot), every j ≠ i with id_j = id_i is removed
    from row i's negatives (S_ij = −∞), so a repeated item is never pushed away from itself.

    Args:
        x: (..., d) text side. y: (..., d) ID side, same shape; rows paired.
        mask: (...) bool of valid slots (None = all rows).
        dedupe_ids: (...) int64 item ids of the slots, or None.
    Returns:
        scalar tensor; 0 when fewer than 1 valid row.
    """
    xs, ys, keep = flatten_pair(x, y, mask)
    n = xs.shape[0]
    if n < 1:
        return xs.new_zeros(())
    logits = F.normalize(xs, dim=1) @ F.normalize(ys, dim=1).t() / temperature  # n × n
    if dedupe_ids is not None:
        if dedupe_ids.shape != x.shape[:-1]:
            raise ValueError(f"dedupe_ids must have shape {tuple(x.shape[:-1])}, got {tuple(dedupe_ids.shape)}")
        ids = dedupe_ids.reshape(-1)
        if keep is not None:
            ids = ids.index_select(0, keep)
        same = ids.unsqueeze(0) == ids.unsqueeze(1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(n, device=xs.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.t(), target))
    return loss


def item_info_nce(
    id_vecs: torch.Tensor, text_vecs: torch.Tensor, ids: torch.Tensor, temperature: float = 0.05
) -> torch.Tensor:
    """FAERec's item-level alignment: one-direction InfoNCE from the ID view to the text view.

    Over the n item slots (duplicates kept), ``S = â b̂ᵀ / τ`` with unit-normalised rows,
    every other slot of the same item removed from a row's negatives, and
    ``L = mean_n −log softmax_m(S_nm)[m = n]`` (:func:`info_nce` with ``symmetric=False``).

    Args:
        id_vecs: (n, d) E[i_n]. text_vecs: (n, d) MLP(x_{i_n}). ids: (n,) int64 item ids.
        temperature: τ.
    Returns:
        scalar loss (0 without slots).
    """
    return info_nce(id_vecs, text_vecs, temperature=temperature, symmetric=False, dedupe_ids=ids)
