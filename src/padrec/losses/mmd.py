"""Multi-kernel maximum mean discrepancy (MK-MMD²) between paired text-side and ID-side rows.

:func:`mk_mmd` is PAD's phase-2 alignment loss: Gaussian kernels by default, as in the release
that uses thuml's Transfer-Learning-Library, plus Laplacian, linear and cosine kernels, and the
release, unbiased, paired, biased and linear-time estimators. Kernel matrices are reduced one
block at a time and their exponentials recomputed in backward, so memory is O(n² + n·d)
(see docs/ALIGNMENT.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from padrec.losses.pairwise import flatten_pair, pairwise_l1, sq_dists_from_norms

__all__ = ["MMD_ESTIMATORS", "MMD_KERNELS", "mk_mmd"]

MMD_KERNELS = ("gaussian", "laplacian", "linear", "cosine")
MMD_ESTIMATORS = ("release", "unbiased", "paired", "biased", "linear_time")


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
    xs, ys, _ = flatten_pair(x, y, mask)
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
        d_xx = sq_dists_from_norms(xs, xs, x2, x2, zero_diagonal=True)
        d_yy = sq_dists_from_norms(ys, ys, y2, y2, zero_diagonal=True)
        d_xy = sq_dists_from_norms(xs, ys, x2, y2, zero_diagonal=False)
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
