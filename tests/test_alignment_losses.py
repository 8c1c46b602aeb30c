"""Alignment losses (MK-MMD, InfoNCE, dispatcher) against direct NumPy / hand computations."""

import math

import numpy as np
import pytest
import torch

from padrec.losses import pairwise
from padrec.losses.alignment import (
    ALIGNMENT_LOSSES,
    MMD_ESTIMATORS,
    MMD_KERNELS,
    alignment_loss,
    info_nce,
    mk_mmd,
    pairwise_l1,
    pairwise_sq_dists,
)

RELEASE_EXPONENTS = (-3, -2, -1, 0, 1)


# --------------------------------------------------------------------------------------------------
# NumPy reference: pooled 2n × 2n kernel matrix from explicit differences, weight matrix from loops
# --------------------------------------------------------------------------------------------------


def _np_kernel_matrix(z: np.ndarray, kernel: str, exponents=RELEASE_EXPONENTS, mul=2.0) -> np.ndarray:
    diff = z[:, None, :] - z[None, :, :]
    if kernel == "gaussian":
        dist = (diff**2).sum(-1)
        base = dist.mean()  # over all (2n)² entries, zero diagonal included
        return sum(np.exp(-dist / (2.0 * mul**e * base)) for e in exponents)
    if kernel == "laplacian":
        dist = np.abs(diff).sum(-1)
        base = dist.mean()
        return sum(np.exp(-dist / (mul**e * base)) for e in exponents)
    if kernel == "linear":
        return (z[:, None, :] * z[None, :, :]).sum(-1)
    if kernel == "cosine":
        zn = z / np.linalg.norm(z, axis=1, keepdims=True)
        return (zn[:, None, :] * zn[None, :, :]).sum(-1)
    raise AssertionError(kernel)


def _np_weights(n: int, estimator: str) -> np.ndarray:
    w = np.zeros((2 * n, 2 * n))
    if estimator == "linear_time":  # the release's linear index matrix: entries assigned, not added
        for i in range(n):
            s1, s2 = i, (i + 1) % n
            t1, t2 = s1 + n, s2 + n
            w[s1, s2] = w[t1, t2] = 1.0 / n
            w[s1, t2] = w[s2, t1] = -1.0 / n
        return w
    for i in range(n):
        for j in range(n):
            if estimator == "biased":
                within, cross = 1.0 / n**2, -1.0 / n**2
            elif estimator == "paired":
                within = cross = 0.0
                if i != j:
                    within, cross = 1.0 / (n * (n - 1)), -1.0 / (n * (n - 1))
            else:  # release / unbiased: off-diagonal within, every cross pair
                within = 1.0 / (n * (n - 1)) if i != j else 0.0
                cross = -1.0 / n**2
            w[i, j] = w[n + i, n + j] = within
            w[i, n + j] = w[n + i, j] = cross
    return w


def _np_mmd(x: np.ndarray, y: np.ndarray, kernel: str, estimator: str = "release", **kw) -> float:
    n = x.shape[0]
    k = _np_kernel_matrix(np.concatenate([x, y]), kernel, **kw)
    value = float((k * _np_weights(n, estimator)).sum())
    return value + 2.0 / (n - 1) if estimator in ("release", "linear_time") else value


def _rand(n: int, d: int, seed: int, shift: float = 0.0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(n, d, generator=g, dtype=dtype) * 1.3 + shift
    return x, y


# --------------------------------------------------------------------------------------------------
# (a) equality with the NumPy estimator
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", MMD_KERNELS)
@pytest.mark.parametrize("estimator", MMD_ESTIMATORS)
def test_mmd_matches_numpy_reference(kernel: str, estimator: str) -> None:
    x, y = _rand(13, 6, seed=1, shift=0.4)
    got = float(mk_mmd(x, y, kernel=kernel, estimator=estimator))
    want = _np_mmd(x.numpy(), y.numpy(), kernel, estimator)
    assert got == pytest.approx(want, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("kernel", MMD_KERNELS)
def test_linear_time_estimator_at_two_rows(kernel: str) -> None:
    x, y = _rand(2, 3, seed=22, shift=0.4)
    got = float(mk_mmd(x, y, kernel=kernel, estimator="linear_time"))
    assert got == pytest.approx(_np_mmd(x.numpy(), y.numpy(), kernel, "linear_time"), rel=1e-6)


def test_mmd_custom_bandwidth_ladder_matches_numpy() -> None:
    x, y = _rand(9, 4, seed=2, shift=0.2)
    exps = (-1.0, 0.5, 2.0)
    got = float(mk_mmd(x, y, num_kernels=3, kernel_mul=3.0, exponents=exps))
    assert got == pytest.approx(_np_mmd(x.numpy(), y.numpy(), "gaussian", exponents=exps, mul=3.0), rel=1e-6)


def test_default_ladder_without_exponents_is_the_release_one() -> None:
    x, y = _rand(10, 3, seed=3)
    assert float(mk_mmd(x, y, exponents=None)) == pytest.approx(float(mk_mmd(x, y)), rel=1e-12)
    with pytest.raises(ValueError, match="num_kernels"):
        mk_mmd(x, y, num_kernels=3)


def test_release_estimator_is_unbiased_plus_constant() -> None:
    x, y = _rand(20, 5, seed=4, shift=0.3)
    gap = float(mk_mmd(x, y, estimator="release") - mk_mmd(x, y, estimator="unbiased"))
    assert gap == pytest.approx(2.0 / 19, rel=1e-9)


def test_fixed_bandwidth_matches_numpy() -> None:
    x, y = _rand(8, 3, seed=5, shift=0.5)
    z = np.concatenate([x.numpy(), y.numpy()])
    dist = ((z[:, None] - z[None]) ** 2).sum(-1)
    k = sum(np.exp(-dist / (2.0 * 2.0**e * 2.5)) for e in RELEASE_EXPONENTS)
    want = float((k * _np_weights(8, "unbiased")).sum())
    assert float(mk_mmd(x, y, estimator="unbiased", base_bandwidth=2.5)) == pytest.approx(want, rel=1e-6)


def test_pairwise_distances_match_explicit_differences() -> None:
    a, b = _rand(7, 5, seed=6)
    b = b[:4]
    diff = a[:, None, :] - b[None, :, :]
    assert torch.allclose(pairwise_sq_dists(a, b), (diff**2).sum(-1), atol=1e-10)
    assert torch.allclose(pairwise_l1(a, b), diff.abs().sum(-1), atol=1e-10)
    assert torch.all(pairwise_sq_dists(a, a, zero_diagonal=True).diagonal() == 0)


# --------------------------------------------------------------------------------------------------
# (b) near zero for one distribution, clearly positive for a shifted one
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", MMD_KERNELS)
def test_mmd_small_for_same_distribution_large_for_shift(kernel: str) -> None:
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(500, 16, generator=g), torch.randn(500, 16, generator=g)
    same = abs(float(mk_mmd(x, y, kernel=kernel)))
    shifted = float(mk_mmd(x, y + 1.0, kernel=kernel))
    # The linear kernel's value scales with ‖Δmean‖² = d, so its noise floor is larger.
    assert same < (0.05 if kernel == "linear" else 0.02)
    assert shifted > 10 * same and shifted > 0.1


# --------------------------------------------------------------------------------------------------
# (c) masking
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALIGNMENT_LOSSES)
def test_masked_equals_unmasked_on_valid_rows(name: str) -> None:
    g = torch.Generator().manual_seed(8)
    x, y = (
        torch.randn(3, 7, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 7, 5, generator=g, dtype=torch.float64),
    )
    mask = torch.rand(3, 7, generator=g) > 0.4
    x = x.masked_fill(~mask[..., None], 0.0)  # padding slots hold zeros, as a padding embedding would
    got = float(alignment_loss(name, x, y, mask=mask))
    want = float(alignment_loss(name, x[mask], y[mask]))
    assert got == pytest.approx(want, rel=1e-9)
    if name != "infonce":
        # With no mask the padding rows count (the release's behaviour) and change the value.
        assert float(alignment_loss(name, x, y)) != pytest.approx(want, rel=1e-6)


def test_fewer_than_two_valid_rows_give_zero() -> None:
    x, y = _rand(4, 3, seed=9)
    mask = torch.tensor([False, True, False, False])
    assert float(mk_mmd(x, y, mask=mask)) == 0.0


# --------------------------------------------------------------------------------------------------
# (d) gradients
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALIGNMENT_LOSSES)
def test_gradients_reach_both_sides_and_are_finite(name: str) -> None:
    x, y = _rand(40, 8, seed=10, shift=0.5, dtype=torch.float32)
    x.requires_grad_(True)
    y.requires_grad_(True)
    alignment_loss(name, x, y).backward()
    for t in (x, y):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


@pytest.mark.parametrize("kernel", MMD_KERNELS)
def test_gradcheck_with_fixed_bandwidth(kernel: str) -> None:
    x, y = _rand(6, 3, seed=11, shift=0.3)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: mk_mmd(a, b, kernel=kernel, base_bandwidth=2.0), (x, y))


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
def test_bandwidth_is_detached(kernel: str) -> None:
    """Gradient with the data-dependent σ² equals the gradient with σ² fixed at the same value."""
    x, y = _rand(12, 4, seed=12, shift=0.3)
    z = torch.cat([x, y])
    dist = torch.cdist(z, z, p=2.0 if kernel == "gaussian" else 1.0)
    sigma2 = float((dist**2 if kernel == "gaussian" else dist).mean())
    grads = []
    for bw in (None, sigma2):
        a, b = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        mk_mmd(a, b, kernel=kernel, base_bandwidth=bw).backward()
        grads.append(torch.cat([a.grad, b.grad]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("chunked", [False, True])
def test_pairwise_l1_backward(monkeypatch: pytest.MonkeyPatch, chunked: bool) -> None:
    """Both backward paths (CPU aten kernel; chunked loop used on CUDA) against finite differences."""
    monkeypatch.setattr(pairwise, "_L1_FORCE_CHUNKED", chunked)
    monkeypatch.setattr(pairwise, "_L1_CHUNK_ELEMENTS", 20)  # one row per chunk
    a, b = _rand(5, 4, seed=13)
    a.requires_grad_(True)
    b = b[:3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(pairwise_l1, (a, b))
    assert torch.autograd.gradcheck(lambda u: pairwise_l1(u, u), (a,))


# --------------------------------------------------------------------------------------------------
# (e) InfoNCE
# --------------------------------------------------------------------------------------------------


def _hand_infonce(x: torch.Tensor, y: torch.Tensor, tau: float, ids=None) -> tuple[float, float]:
    n = x.shape[0]
    xl, yl = x.tolist(), y.tolist()

    def cos(a, b):
        return sum(p * q for p, q in zip(a, b)) / math.sqrt(sum(p * p for p in a) * sum(q * q for q in b))

    s = [[cos(xl[i], yl[j]) / tau for j in range(n)] for i in range(n)]

    def direction(mat):
        total = 0.0
        for i in range(n):
            cols = [j for j in range(n) if j == i or ids is None or ids[j] != ids[i]]
            total += -mat[i][i] + math.log(sum(math.exp(mat[i][j]) for j in cols))
        return total / n

    fwd = direction(s)
    bwd = direction([[s[j][i] for j in range(n)] for i in range(n)])
    return fwd, bwd


def test_info_nce_matches_hand_computation() -> None:
    x, y = _rand(5, 3, seed=14)
    fwd, bwd = _hand_infonce(x, y, 0.5)
    assert float(info_nce(x, y, temperature=0.5, symmetric=False)) == pytest.approx(fwd, rel=1e-9)
    assert float(info_nce(x, y, temperature=0.5)) == pytest.approx(0.5 * (fwd + bwd), rel=1e-9)


def test_info_nce_removes_duplicate_items_from_negatives() -> None:
    x, y = _rand(5, 3, seed=15)
    ids = torch.tensor([4, 9, 4, 2, 9])
    fwd, bwd = _hand_infonce(x, y, 0.1, ids=ids.tolist())
    got = float(info_nce(x, y, temperature=0.1, dedupe_ids=ids))
    assert got == pytest.approx(0.5 * (fwd + bwd), rel=1e-9)
    assert got != pytest.approx(float(info_nce(x, y, temperature=0.1)), rel=1e-6)
    # Two slots holding the same item with the same vectors: deduped, neither is the other's negative.
    xd = torch.cat([x[:1], x[:1], x[1:]])
    yd = torch.cat([y[:1], y[:1], y[1:]])
    idd = torch.tensor([4, 4, 9, 3, 2, 8])
    val = float(info_nce(xd, yd, temperature=0.1, dedupe_ids=idd))
    assert val == pytest.approx(float(np.mean(_hand_infonce(xd, yd, 0.1, ids=idd.tolist()))), rel=1e-9)


def test_info_nce_mask_and_ids_with_leading_dims() -> None:
    g = torch.Generator().manual_seed(16)
    x, y = (
        torch.randn(2, 4, 3, generator=g, dtype=torch.float64),
        torch.randn(2, 4, 3, generator=g, dtype=torch.float64),
    )
    ids = torch.tensor([[0, 3, 5, 3], [0, 0, 7, 5]])
    mask = ids > 0
    got = float(info_nce(x, y, mask=mask, dedupe_ids=ids))
    want = float(info_nce(x[mask], y[mask], dedupe_ids=ids[mask]))
    assert got == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------------------


def test_dispatcher_routes_and_rejects_unknown_names() -> None:
    x, y = _rand(10, 4, seed=17)
    assert float(alignment_loss("mmd_laplacian", x, y)) == float(mk_mmd(x, y, kernel="laplacian"))
    assert float(alignment_loss("infonce", x, y, temperature=0.2)) == float(info_nce(x, y, temperature=0.2))
    assert float(alignment_loss("mmd_gaussian", x, y, estimator="paired")) == float(mk_mmd(x, y, estimator="paired"))
    with pytest.raises(ValueError) as err:
        alignment_loss("mmd_rbf", x, y)
    for name in ALIGNMENT_LOSSES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="estimator"):
        mk_mmd(x, y, estimator="nope")


# --------------------------------------------------------------------------------------------------
# (f) memory: no n × n × d tensor
# --------------------------------------------------------------------------------------------------


def test_full_batch_size_runs_and_saves_only_quadratic_tensors() -> None:
    n, d = 2600, 128
    g = torch.Generator().manual_seed(18)
    x = torch.randn(n, d, generator=g, requires_grad=True)
    y = torch.randn(n, d, generator=g, requires_grad=True)
    largest = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        largest[0] = max(largest[0], t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = mk_mmd(x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert largest[0] <= n * n  # the saved graph holds n × n distance blocks at most


def test_laplacian_saves_only_quadratic_tensors() -> None:
    n, d = 300, 64
    x, y = _rand(n, d, seed=19, dtype=torch.float32)
    x.requires_grad_(True)
    largest = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        largest[0] = max(largest[0], t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = mk_mmd(x, y, kernel="laplacian")
    loss.backward()
    assert largest[0] <= n * n and torch.isfinite(x.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALIGNMENT_LOSSES)
def test_cuda_matches_cpu(name: str) -> None:
    x, y = _rand(64, 16, seed=20, shift=0.3)
    cpu = float(alignment_loss(name, x, y))
    gpu = float(alignment_loss(name, x.cuda(), y.cuda()))
    assert gpu == pytest.approx(cpu, rel=1e-9)


def test_float32_close_to_float64() -> None:
    x, y = _rand(200, 32, seed=21, shift=0.2)
    for kernel in MMD_KERNELS:
        v64 = float(mk_mmd(x, y, kernel=kernel))
        v32 = float(mk_mmd(x.float(), y.float(), kernel=kernel))
        assert v32 == pytest.approx(v64, rel=1e-3, abs=1e-5)
    assert float(info_nce(x.float(), y.float())) == pytest.approx(float(info_nce(x, y)), rel=1e-5)
