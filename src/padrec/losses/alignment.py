"""Alignment losses between a text-side and an ID-side batch of item vectors.

All functions take paired rows: ``x`` (text side) and ``y`` (ID side) of shape ``(..., d)``; row ``i``
of ``x`` and row ``i`` of ``y`` are the same item slot. Leading dimensions are flattened, so a
``(B, L, d)`` batch of item slots with a ``(B, L)`` mask can be passed as is.

* :func:`mk_mmd` -- multi-kernel MMD² (PAD phase 2; Gaussian by default, as in the release that uses
  thuml's Transfer-Learning-Library), plus Laplacian, linear and cosine kernels.
* :func:`info_nce` -- cosine-similarity InfoNCE with positives on the diagonal.
* :func:`alignment_loss` -- dispatch by name.

Memory is O(n² + n·d): no ``n × n × d`` tensor of differences is ever built (see docs/ALIGNMENT.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

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

MMD_KERNELS = ("gaussian", "laplacian", "linear", "cosine")
MMD_ESTIMATORS = ("release", "unbiased", "paired", "biased", "linear_time")
ALIGNMENT_LOSSES = ("mmd_gaussian", "mmd_laplacian", "mmd_linear", "mmd_cosine", "infonce")

# Elements of one (rows × m × d) chunk in the L1 backward: 4M floats = 16 MiB in float32.
_L1_CHUNK_ELEMENTS = 1 << 22
# Use the chunked L1 backward on CPU too (tests exercise the CUDA code path with it).
_L1_FORCE_CHUNKED = False


# ----------------------------------------------------------------------------------------------------
# Pairwise distances without an n × m × d tensor
# ----------------------------------------------------------------------------------------------------


def _sq_dists_unclamped(
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
    return _sq_dists_unclamped(a, b, a2, b2, zero_diagonal).clamp_min(0.0)


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


class _MultiKernelSum(torch.autograd.Function):
    """S = Σ_u exp(−max(D, 0)·c_u) elementwise.

    Saves only D (one n × m tensor) and recomputes the exponentials in backward; plain autograd would
    keep every exp output (m tensors) plus the clamp's input.
    """

    @staticmethod
    def forward(ctx: Any, dist: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(dist, coef)
        d = dist.clamp_min(0.0)
        out = torch.zeros_like(d)
        for u in range(coef.shape[0]):
            out += torch.exp(d * -coef[u])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        dist, coef = ctx.saved_tensors
        d = dist.clamp_min(0.0)
        deriv = torch.zeros_like(d)
        for u in range(coef.shape[0]):
            deriv -= coef[u] * torch.exp(d * -coef[u])
        deriv.masked_fill_(dist < 0, 0.0)
        return grad * deriv, None


# ----------------------------------------------------------------------------------------------------
# MK-MMD
# ----------------------------------------------------------------------------------------------------


def _flatten_pair(
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


def _bandwidth_multipliers(num_kernels: int, kernel_mul: float, exponents: Sequence[float] | None) -> list[float]:
    """α_u = kernel_mul ** e_u; without exponents, e = the num_kernels consecutive integers ending at 1."""
    if exponents is None:
        if num_kernels < 1:
            raise ValueError(f"num_kernels must be >= 1, got {num_kernels}")
        exponents = [float(k) for k in range(2 - num_kernels, 2)]
    elif len(exponents) != num_kernels:
        raise ValueError(
            f"num_kernels={num_kernels} disagrees with exponents={tuple(exponents)}; pass both consistently"
        )
    return [float(kernel_mul) ** float(e) for e in exponents]


def _combine(
    p_xx: torch.Tensor,
    q_xx: torch.Tensor,
    p_yy: torch.Tensor,
    q_yy: torch.Tensor,
    p_xy: torch.Tensor,
    q_xy: torch.Tensor,
    n: int,
    estimator: str,
) -> torch.Tensor:
    """MMD² from per-block statistics of the symmetric kernel matrices K_xx, K_yy, K_xy.

    For the all-pairs estimators p = Σ_ij K[i, j] and q = Σ_i K[i, i]; for ``"linear_time"``
    p = Σ_i K[i, i⁺] and q = Σ_i K[i⁺, i] with i⁺ = (i + 1) mod n.
    """
    if estimator == "linear_time":
        cross = p_xy + q_xy
        if n == 2:
            # The release's index matrix assigns (not adds) its weights; at n = 2 the two cross
            # entries of each pair coincide and count once.
            cross = cross / 2
        return (p_xx + p_yy - cross) / n + 2.0 / (n - 1)
    within_off = p_xx - q_xx + p_yy - q_yy
    if estimator == "release":
        return within_off / (n * (n - 1)) - 2.0 * p_xy / (n * n) + 2.0 / (n - 1)
    if estimator == "unbiased":
        return within_off / (n * (n - 1)) - 2.0 * p_xy / (n * n)
    if estimator == "paired":
        return (within_off - 2.0 * (p_xy - q_xy)) / (n * (n - 1))
    if estimator == "biased":
        return (p_xx + p_yy - 2.0 * p_xy) / (n * n)
    raise ValueError(f"unknown MMD estimator {estimator!r}; valid: {', '.join(MMD_ESTIMATORS)}")


def _block_stats(k: torch.Tensor, linear_time: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, q) of :func:`_combine` for one n × n kernel block."""
    if not linear_time:
        return k.sum(), k.diagonal().sum()
    i = torch.arange(k.shape[0], device=k.device)
    nxt = (i + 1) % k.shape[0]
    return k[i, nxt].sum(), k[nxt, i].sum()


def _linear_block_stats(a: torch.Tensor, b: torch.Tensor, linear_time: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, q) of :func:`_combine` for the linear kernel K = a bᵀ in O(n·d), without forming K."""
    if not linear_time:
        return a.sum(0) @ b.sum(0), (a * b).sum()  # Σ_ij a_i·b_j = (Σ_i a_i)·(Σ_j b_j)
    return (a * b.roll(-1, 0)).sum(), (a.roll(-1, 0) * b).sum()


def mk_mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: str = "gaussian",
    num_kernels: int = 5,
    kernel_mul: float = 2.0,
    exponents: Sequence[float] | None = (-3, -2, -1, 0, 1),
    mask: torch.Tensor | None = None,
    estimator: str = "release",
    base_bandwidth: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-kernel maximum mean discrepancy MMD²(x, y) between two paired batches.

    With n valid rows per side, kernel matrices K_xx, K_yy, K_xy and the default ``estimator="release"``
    (thuml Transfer-Learning-Library ``MultipleKernelMaximumMeanDiscrepancy``, ``linear=False``)::

        MMD² = Σ_{i≠j} [K_xx + K_yy]_ij / (n(n−1)) − 2 Σ_{i,j} K_xy[i, j] / n² + 2/(n−1)

    (the cross term includes the pairs (i, i); 2/(n−1) is a constant the release adds).
    ``"unbiased"`` drops the constant (Gretton et al.'s MMD²_u), ``"paired"`` also drops the (i, i)
    cross pairs (U-statistic over paired rows: Σ_{i≠j}[K_xx + K_yy − K_xy − K_yx]_ij / (n(n−1))),
    ``"biased"`` averages every entry (Σ[K_xx + K_yy − 2K_xy] / n², ≥ 0 for p.d. kernels).
    ``"linear_time"`` is the release class with ``linear=True`` (DAN's linear-time estimator, the
    default of thuml's DAN example script), constant included, i⁺ = (i + 1) mod n::

        MMD² = (1/n) Σ_i [K_xx[i, i⁺] + K_yy[i, i⁺] − K_xy[i, i⁺] − K_xy[i⁺, i]] + 2/(n−1)

    (its bandwidth still comes from the full pooled matrix, as in the release).

    Kernels (summed over the multipliers α_u = kernel_mul ** e_u, e_u in ``exponents``):

    * ``"gaussian"``: k = Σ_u exp(−‖a−b‖² / (2 α_u σ²)), σ² = mean of the pooled (2n × 2n) squared
      distance matrix, diagonal zeros included (= Σ_ij ‖z_i − z_j‖² / (2n)²), detached.
    * ``"laplacian"``: k = Σ_u exp(−‖a−b‖₁ / (α_u σ²)), σ² = mean pooled L1 distance, detached.
    * ``"linear"``: k = a·b (one kernel; ``num_kernels``/``exponents`` unused).
    * ``"cosine"``: k = cos(a, b) = â·b̂. Equivalently the energy-style discrepancy of the distance
      1 − cos: 2E[1−cos(x,y)] − E[1−cos(x,x')] − E[1−cos(y,y')]; larger = more discrepancy.

    ``base_bandwidth`` fixes σ² instead of the data-dependent rule. Fewer than 2 valid rows → 0.

    Args:
        x: (..., d) text side. y: (..., d) ID side, same shape; rows paired.
        mask: (...) bool, True for slots that count; None = every row (the release's behaviour,
            which includes padding slots).
    Returns:
        scalar tensor (x's dtype and device), differentiable w.r.t. x and y.
    """
    if kernel not in MMD_KERNELS:
        raise ValueError(f"unknown MMD kernel {kernel!r}; valid: {', '.join(MMD_KERNELS)}")
    if estimator not in MMD_ESTIMATORS:
        raise ValueError(f"unknown MMD estimator {estimator!r}; valid: {', '.join(MMD_ESTIMATORS)}")
    xs, ys, _ = _flatten_pair(x, y, mask)
    n = xs.shape[0]
    if n < 2:
        return xs.new_zeros(())

    if kernel in ("linear", "cosine"):
        if kernel == "cosine":
            xs, ys = F.normalize(xs, dim=1), F.normalize(ys, dim=1)
        lt = estimator == "linear_time"
        return _combine(
            *_linear_block_stats(xs, xs, lt),
            *_linear_block_stats(ys, ys, lt),
            *_linear_block_stats(xs, ys, lt),
            n,
            estimator,
        )

    alphas = torch.tensor(_bandwidth_multipliers(num_kernels, kernel_mul, exponents), dtype=xs.dtype, device=xs.device)
    if kernel == "gaussian":
        x2, y2 = (xs * xs).sum(dim=1), (ys * ys).sum(dim=1)
        d_xx = _sq_dists_unclamped(xs, xs, x2, x2, zero_diagonal=True)
        d_yy = _sq_dists_unclamped(ys, ys, y2, y2, zero_diagonal=True)
        d_xy = _sq_dists_unclamped(xs, ys, x2, y2, zero_diagonal=False)
    else:
        d_xx, d_yy, d_xy = pairwise_l1(xs, xs), pairwise_l1(ys, ys), pairwise_l1(xs, ys)

    if base_bandwidth is None:
        with torch.no_grad():
            # Mean over the pooled 2n × 2n matrix; the y–x block is the transpose of x–y.
            total = sum(d.clamp_min(0.0).sum() for d in (d_xx, d_yy, d_xy, d_xy))
            sigma2 = total / (4.0 * n * n)
    else:
        sigma2 = torch.as_tensor(base_bandwidth, dtype=xs.dtype, device=xs.device)
    sigma2 = sigma2.detach().clamp_min(torch.finfo(xs.dtype).tiny)
    scale = 2.0 if kernel == "gaussian" else 1.0
    coef = 1.0 / (scale * alphas * sigma2)  # (m,) exponent coefficients c_u

    lt = estimator == "linear_time"
    # Each block's kernel matrix is reduced as soon as it exists, so only one is alive at a time.
    p_xx, q_xx = _block_stats(_MultiKernelSum.apply(d_xx, coef), lt)
    p_yy, q_yy = _block_stats(_MultiKernelSum.apply(d_yy, coef), lt)
    p_xy, q_xy = _block_stats(_MultiKernelSum.apply(d_xy, coef), lt)
    return _combine(p_xx, q_xx, p_yy, q_yy, p_xy, q_xy, n, estimator)


# ----------------------------------------------------------------------------------------------------
# InfoNCE
# ----------------------------------------------------------------------------------------------------


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
    xs, ys, keep = _flatten_pair(x, y, mask)
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


# ----------------------------------------------------------------------------------------------------
# Dispatcher
# ----------------------------------------------------------------------------------------------------


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
