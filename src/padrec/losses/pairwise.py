"""Paired item rows and pairwise distance matrices, never building an ``n × m × d`` tensor.

* :func:`flatten_pair` -- check two paired ``(..., d)`` batches and flatten them to ``(n, d)``
  rows, keeping the masked-in slots.
* :func:`pairwise_sq_dists` -- squared Euclidean distances from one matrix product
  (:func:`sq_dists_from_norms`: the same from precomputed row norms, unclamped).
* :func:`pairwise_l1` -- L1 distances whose backward needs O(n·m + chunk) extra memory.

Used by the alignment losses (:mod:`padrec.losses.mmd`, :mod:`padrec.losses.contrastive`).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["flatten_pair", "pairwise_l1", "pairwise_sq_dists", "sq_dists_from_norms"]

# Elements of one (rows × m × d) chunk in the L1 backward: 4M floats = 16 MiB in float32.
_L1_CHUNK_ELEMENTS = 1 << 22
# Use the chunked L1 backward on CPU too (tests exercise the CUDA code path with it).
_L1_FORCE_CHUNKED = False


def sq_dists_from_norms(
    a: torch.Tensor, b: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor, zero_diagonal: bool
) -> torch.Tensor:
    """‖a_i‖² + ‖b_j‖² − 2 a_i·b_j from precomputed row norms a2 (n,), b2 (m,); (n, m), may be < 0."""
    d = torch.addmm(a2.unsqueeze(1) + b2.unsqueeze(0), a, b.t(), beta=1.0, alpha=-2.0)
    if zero_diagonal:
        # addmm does not save its output, so this in-place edit is safe for autograd.
        d.fill_diagonal_(0.0)
    return d


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor, zero_diagonal: bool = False) -> torch.Tensor:
    """Squared Euclidean distances D[i, j] = max(‖a_i‖² + ‖b_j‖² − 2 a_i·b_j, 0).

    One matrix product; memory O(n·m + (n+m)·d). With ``zero_diagonal`` (use when ``a`` is ``b``)
    the diagonal is set to exactly 0, removing the rounding left by the expansion.

    Args:
        a: (n, d). b: (m, d), same dtype and device.
    Returns:
        (n, m) distances, differentiable w.r.t. ``a`` and ``b``.
    """
    a2, b2 = (a * a).sum(dim=1), (b * b).sum(dim=1)
    return sq_dists_from_norms(a, b, a2, b2, zero_diagonal).clamp_min(0.0)


class _PairwiseL1(torch.autograd.Function):
    """L1 distance matrix whose backward never allocates an n × m × d buffer.

    Forward is ``torch.cdist(p=1)``, which writes the n × m result directly on CPU and CUDA. Backward:
    on CPU, aten's ``_cdist_backward`` (a fused loop with O(n·d) extra memory, ~20× faster than the
    chunked loop here); elsewhere, row chunks, because the CUDA ``_cdist_backward`` allocates an
    (m, n, d) buffer (aten/src/ATen/native/cuda/DistanceKernel.cu, ``cdist_backward_kernel_impl``).
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = torch.cdist(a, b, p=1.0)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        a, b, dist = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if a.device.type == "cpu" and not _L1_FORCE_CHUNKED:
            grad_a = torch.ops.aten._cdist_backward(grad.contiguous(), a, b, 1.0, dist) if need_a else None
            grad_b = (
                torch.ops.aten._cdist_backward(grad.t().contiguous(), b, a, 1.0, dist.t().contiguous())
                if need_b
                else None
            )
            return grad_a, grad_b
        return _l1_backward_chunked(grad, a, b, need_a, need_b)


def _l1_backward_chunked(
    grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor, need_a: bool, need_b: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """∂/∂a_i = Σ_j G_ij sign(a_i − b_j), ∂/∂b_j = −Σ_i G_ij sign(a_i − b_j), in row chunks of a.

    Args: grad G (n, m); a (n, d); b (m, d). Returns (n, d) and (m, d) gradients (or None).
    """
    grad_a = torch.zeros_like(a) if need_a else None
    grad_b = torch.zeros_like(b) if need_b else None
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    rows = max(1, _L1_CHUNK_ELEMENTS // max(1, m * d))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        sign = torch.sign(a[start:stop, None, :] - b[None, :, :])  # rows × m × d, bounded
        g = grad[start:stop]  # rows × m
        if grad_a is not None:
            grad_a[start:stop] = torch.bmm(g.unsqueeze(1), sign).squeeze(1)
        if grad_b is not None:
            grad_b -= torch.einsum("rm,rmd->md", g, sign)
    return grad_a, grad_b


def pairwise_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 distances D[i, j] = Σ_k |a_ik − b_jk|.

    Forward via ``torch.cdist(p=1)``; backward ∂/∂a_i = Σ_j G_ij sign(a_i − b_j), ∂/∂b_j = −Σ_i G_ij
    sign(a_i − b_j): aten's fused CPU kernel on CPU, row chunks of at most 2²² elements elsewhere, so
    peak extra memory is O(n·m + chunk), never n·m·d. Not twice differentiable.

    Args:
        a: (n, d). b: (m, d).
    Returns:
        (n, m) distances.
    """
    return _PairwiseL1.apply(a.contiguous(), b.contiguous())


def flatten_pair(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Flatten (..., d) to (n, d) and keep the rows where ``mask`` (...,) is True; returns the row index."""
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (paired rows), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() < 2:
        raise ValueError(f"x and y must be (..., d) with at least 2 dimensions, got {tuple(x.shape)}")
    d = x.shape[-1]
    x2, y2 = x.reshape(-1, d), y.reshape(-1, d)
    if mask is None:
        return x2, y2, None
    if mask.shape != x.shape[:-1]:
        raise ValueError(f"mask must have shape {tuple(x.shape[:-1])}, got {tuple(mask.shape)}")
    keep = mask.reshape(-1).to(torch.bool).nonzero(as_tuple=True)[0]
    return x2.index_select(0, keep), y2.index_select(0, keep), keep
