"""Alignment losses between a text-side and an ID-side batch of item vectors: the dispatcher.

All functions take paired rows: ``x`` (text side) and ``y`` (ID side) of shape ``(..., d)``; row ``i``
of ``x`` and row ``i`` of ``y`` are the same item slot. Leading dimensions are flattened, so a
``(B, L, d)`` batch of item slots with a ``(B, L)`` mask can be passed as is.

* :func:`mk_mmd` (:mod:`padrec.losses.mmd`) -- multi-kernel MMD² (PAD phase 2; Gaussian by
  default), plus Laplacian, linear and cosine kernels.
* :func:`info_nce` (:mod:`padrec.losses.contrastive`) -- cosine-similarity InfoNCE with positives
  on the diagonal.
* :func:`pairwise_sq_dists`, :func:`pairwise_l1` (:mod:`padrec.losses.pairwise`) -- the distance
  matrices they use.
* :func:`alignment_loss` (here) -- dispatch by name.

Memory is O(n² + n·d): no ``n × n × d`` tensor of differences is ever built (see docs/ALIGNMENT.md).
"""

from __future__ import annotations

from typing import Any

import torch

from padrec.losses.contrastive import info_nce
from padrec.losses.mmd import MMD_ESTIMATORS, MMD_KERNELS, mk_mmd
from padrec.losses.pairwise import pairwise_l1, pairwise_sq_dists

__all__ = [
    "ALIGNMENT_LOSSES",
    "MMD_ESTIMATORS",
    "MMD_KERNELS",
    "alignment_loss",
    "info_nce",
    "mk_mmd",
    "pairwise_l1",
    "pairwise_sq_dists",
]

ALIGNMENT_LOSSES = ("mmd_gaussian", "mmd_laplacian", "mmd_linear", "mmd_cosine", "infonce")


def alignment_loss(
    name: str, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, **kwargs: Any
) -> torch.Tensor:
    """Alignment loss by name: ``mmd_<kernel>`` → :func:`mk_mmd` with that kernel, ``infonce`` →
    :func:`info_nce`; extra keyword arguments go to that function.

    Args:
        name: one of :data:`ALIGNMENT_LOSSES`.
        x, y: (..., d) paired text-side and ID-side rows. mask: (...) bool or None.
    Returns:
        scalar tensor.
    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name == "infonce":
        return info_nce(x, y, mask=mask, **kwargs)
    if name.startswith("mmd_") and name[4:] in MMD_KERNELS:
        return mk_mmd(x, y, kernel=name[4:], mask=mask, **kwargs)
    raise ValueError(f"unknown alignment loss {name!r}; valid: {', '.join(ALIGNMENT_LOSSES)}")
