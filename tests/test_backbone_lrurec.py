"""LRURec: the parallel scan equals the step-by-step recurrence, the ring initialisation,
exact left padding, config checks and a short training run that learns.

The contract every backbone meets (padding, causality, gradients, safetensors) is checked
for ``lrurec`` by ``tests/test_backbones.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from padrec.config import ConfigError
from padrec.data import make_split
from padrec.data.protocols import SplitConfig
from padrec.evaluation import EvalConfig
from padrec.methods import METHODS, MethodContext
from padrec.models.backbones import BACKBONES
from padrec.models.backbones.lrurec import LRULayer, LRURec, LRURecConfig, complex_scan
from padrec.training.trainer import TrainConfig, Trainer, set_seed

D, L = 16, 8


pytestmark = pytest.mark.usefixtures("single_thread")


def build(seed: int = 0, **overrides) -> LRURec:
    torch.manual_seed(seed)
    return LRURec(LRURecConfig(hidden_size=D, max_len=L, **overrides))


def stepwise_scan(u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """h_t = λ ⊙ h_{t-1} + u_t, h_{-1} = 0, one position at a time; u: B×L×N complex, λ: N."""
    h = torch.zeros_like(u[:, 0])
    out = []
    for t in range(u.shape[1]):
        h = lam * h + u[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("length", [1, 2, 5, 8, 13, 50])
def test_parallel_scan_equals_stepwise_recurrence(length: int) -> None:
    g = torch.Generator().manual_seed(length)
    n = 12
    u = torch.randn(3, length, n, generator=g, dtype=torch.float64) + 1j * torch.randn(
        3, length, n, generator=g, dtype=torch.float64
    )
    nu = torch.rand(n, generator=g, dtype=torch.float64) * 0.5 + 0.01  # |λ| in (0.6, 0.99)
    theta = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    log_lambda = torch.complex(-nu, theta)
    expected = stepwise_scan(u, torch.exp(log_lambda))
    h = complex_scan(u, log_lambda)  # in complex128: the algorithm itself
    torch.testing.assert_close(h, expected, atol=1e-5, rtol=1e-5)
    # in complex64 (as trained) up to rounding: |h| reaches ~10 here, so 1e-5 relative to its scale
    h = complex_scan(u.to(torch.complex64), log_lambda.to(torch.complex64))
    scale = expected.abs().max().item()
    torch.testing.assert_close(h.to(torch.complex128), expected, atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("scan", ["kernel", "doubling"])
@pytest.mark.parametrize("bias", [False, True])
def test_lru_layer_equals_stepwise_formula(bias: bool, scan: str) -> None:
    """The layer is LayerNorm(x + Re(C h)) with h_t = λ h_{t-1} + γ (B x_t) over the real items."""
    torch.manual_seed(0)
    cfg = LRURecConfig(hidden_size=D, max_len=L, bias=bias, state_size=10, scan=scan)
    layer = LRULayer(cfg).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so Re(C h) matters
        for p in (layer.in_proj.weight, layer.out_proj.weight):
            p.normal_(0.0, 0.5)
    x = torch.randn(2, L, D)
    pad = torch.arange(L)[None, :] < torch.tensor([[0], [3]])
    y = layer(x, pad, None)
    rows = (~pad).flatten().nonzero().squeeze(1)  # the packed form: real positions only
    torch.testing.assert_close(layer(x.reshape(-1, D)[rows], pad, rows), y[~pad])

    n = 10
    w_in, w_out = layer.in_proj.weight, layer.out_proj.weight
    b_matrix = torch.complex(w_in[:n], w_in[n:])  # N×d
    c_matrix = torch.complex(w_out[:, :n], -w_out[:, n:])  # d×N, so Re(C h) = C_re h_re - C_im h_im
    nu, theta = torch.exp(layer.nu_log), torch.exp(layer.theta_log)
    lam = torch.exp(torch.complex(-nu, theta))
    gamma = torch.exp(layer.gamma_log)
    for row in range(2):
        h = torch.zeros(n, dtype=torch.complex64)
        for t in range(L):
            if pad[row, t]:
                continue
            bx = b_matrix @ x[row, t].to(torch.complex64)
            if bias:
                bx = bx + torch.complex(layer.in_proj.bias[:n], layer.in_proj.bias[n:])
            h = lam * h + gamma * bx
            out = (c_matrix @ h).real + (layer.out_proj.bias if bias else 0.0)
            expected = torch.nn.functional.layer_norm(x[row, t] + out, (D,), layer.norm.weight, layer.norm.bias)
            torch.testing.assert_close(y[row, t], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("learn_gamma", [True, False])
def test_kernel_scan_equals_doubling_scan_with_gradients(learn_gamma: bool) -> None:
    """``scan: kernel`` and ``scan: doubling`` give the same outputs and parameter gradients."""
    torch.manual_seed(1)
    kernel = build(bias=True, scan="kernel", learn_gamma=learn_gamma, r_min=0.5, r_max=0.99)
    doubling = build(bias=True, scan="doubling", learn_gamma=learn_gamma, r_min=0.5, r_max=0.99)
    doubling.load_state_dict(kernel.state_dict())
    kernel.eval(), doubling.eval()
    x = torch.randn(6, L, D)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 1, 3, L - 1, 2, 5])[:, None]
    yk, yd = kernel(x, pad), doubling(x, pad)
    torch.testing.assert_close(yk, yd, atol=2e-5, rtol=1e-4)
    yk.pow(3).sum().backward()
    yd.pow(3).sum().backward()
    for (name, pk), pd in zip(kernel.named_parameters(), doubling.parameters()):
        torch.testing.assert_close(pk.grad, pd.grad, atol=1e-4, rtol=1e-3, msg=name)


def test_auto_scan_uses_the_kernel_up_to_64_positions(monkeypatch) -> None:
    from padrec.models.backbones import lrurec

    calls = []
    original = lrurec.scan_kernel
    monkeypatch.setattr(lrurec, "scan_kernel", lambda *a: calls.append(a[2]) or original(*a))
    model = build().eval()
    for length in (64, 65):
        model(torch.randn(2, length, D), torch.zeros(2, length, dtype=torch.bool))
    assert calls == [64, 64]  # two layers at 64 positions, the doubling scan at 65


def test_ring_initialisation() -> None:
    """|λ| = exp(-ν) lies on the ring [r_min, r_max], arg λ in [0, max_phase], γ = sqrt(1 - |λ|²),
    and the ring is covered (not all eigenvalues at one radius)."""
    r_min, r_max, max_phase = 0.5, 0.9, math.pi
    torch.manual_seed(0)
    model = LRURec(
        LRURecConfig(hidden_size=D, max_len=L, state_size=2000, r_min=r_min, r_max=r_max, max_phase=max_phase)
    )
    for block in model.blocks:
        nu, theta = block.lru.eigenvalues()
        modulus = torch.exp(-nu).detach()
        assert modulus.min() >= r_min - 1e-6 and modulus.max() <= r_max + 1e-6
        assert modulus.min() < r_min + 0.02 and modulus.max() > r_max - 0.02
        # uniform in |λ|²: its mean is the midpoint of [r_min², r_max²]
        assert abs((modulus**2).mean().item() - (r_min**2 + r_max**2) / 2) < 0.02
        assert theta.min() >= 0 and theta.max() <= max_phase + 1e-6 and theta.max() > max_phase - 0.05
        torch.testing.assert_close(block.lru.gamma().detach(), torch.sqrt(1 - modulus**2))


def test_defaults_from_the_release() -> None:
    model = BACKBONES.build("lrurec", {"hidden_size": D, "max_len": L})
    cfg = model.config
    assert (cfg.num_layers, cfg.r_min, cfg.r_max, cfg.dropout, cfg.ffn_multiplier) == (2, 0.8, 0.99, 0.2, 4)
    assert len(model.blocks) == 2 and model.blocks[0].lru.state_size == 2 * D
    assert model.blocks[0].ffn.net[0].out_features == 4 * D
    assert isinstance(model.blocks[0].ffn.net[1], torch.nn.GELU)
    assert model.blocks[0].lru.in_proj.bias is None  # the paper's formulas have no biases
    assert (model.causal, model.adds_positions, model.bounded_output) == (True, False, True)
    assert all(not p.is_complex() for p in model.parameters())
    weight = model.blocks[0].ffn.net[0].weight
    assert weight.abs().max() <= 0.04 and abs(weight.std().item() - 0.02) < 0.005  # truncated normal


@pytest.mark.parametrize(
    "overrides",
    [{}, {"bias": True}, {"learn_gamma": False, "input_layer_norm": False}, {"pack_padding": False, "bias": True}],
    ids=["default", "bias", "tied-gamma", "dense"],
)
def test_left_padding_does_not_change_real_outputs(overrides: dict) -> None:
    model = build(**overrides).eval()
    with torch.no_grad():  # make the recurrence and biases matter
        for block in model.blocks:
            block.lru.in_proj.weight.normal_(0.0, 0.5)
            block.lru.out_proj.weight.normal_(0.0, 0.5)
            if block.lru.in_proj.bias is not None:
                block.lru.in_proj.bias.fill_(1.0)
        for module in model.modules():  # LayerNorm biases make padded positions non-zero inside
            if isinstance(module, torch.nn.LayerNorm):
                module.bias.normal_(0.0, 1.0)
    real = torch.randn(1, 4, D)
    alone = model(real, torch.zeros(1, 4, dtype=torch.bool))
    for n_pad in (1, 4, 12):
        x = torch.cat([100 * torch.randn(1, n_pad, D), real], dim=1)
        pad = torch.arange(n_pad + 4)[None, :] < n_pad
        y = model(x, pad)
        torch.testing.assert_close(y[:, n_pad:], alone)
        assert torch.all(y[:, :n_pad] == 0)


def test_packed_equals_dense() -> None:
    packed = build(bias=True).eval()
    dense = LRURec(LRURecConfig(hidden_size=D, max_len=L, bias=True, pack_padding=False)).eval()
    dense.load_state_dict(packed.state_dict())
    x = torch.randn(5, L, D, requires_grad=True)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 3, L - 1, L, 5])[:, None]
    y = packed(x, pad)
    torch.testing.assert_close(y, dense(x, pad))
    (grad_packed,) = torch.autograd.grad(y.pow(2).sum(), x)
    (grad_dense,) = torch.autograd.grad(dense(x, pad).pow(2).sum(), x)
    torch.testing.assert_close(grad_packed, grad_dense)


def test_recurrence_carries_information_from_the_first_item() -> None:
    """The last output depends on the first of 20 items (the state is not reset or truncated)."""
    model = build(r_min=0.95, r_max=0.99).eval()
    x = torch.randn(1, 20, D, requires_grad=True)
    model(x, torch.zeros(1, 20, dtype=torch.bool))[0, -1].pow(2).sum().backward()
    assert x.grad[0, 0].abs().sum() > 0


@pytest.mark.parametrize(
    "bad",
    [{"r_min": 0.9, "r_max": 0.8}, {"r_max": 1.0}, {"max_phase": 0.0}, {"num_layers": 0}, {"lru_dropout": 1.0}],
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        BACKBONES.build("lrurec", {"hidden_size": D, "max_len": L, **bad})


def test_short_training_run_learns(toy_dataset, tmp_path) -> None:
    split = make_split(toy_dataset, SplitConfig(max_len=10))
    set_seed(0)
    method = METHODS.build(
        "sequential", {"backbone": "lrurec", "hidden_size": 16}, context=MethodContext(toy_dataset.num_items, 10)
    )
    cfg = TrainConfig(epochs=3, batch_size=32, lr=5e-3, progress=False, monitor="NDCG@5")
    trainer = Trainer(method, split, cfg, EvalConfig(ks=[5]))
    untrained = trainer.validate(trainer.validation_set()).main()
    res = trainer.fit("train", tmp_path / "t", "fp")
    assert res.history[-1]["loss_rec"] < res.history[0]["loss_rec"]
    # the chain makes the next item predictable; untrained ≈ 0.1 (random), 3 epochs ≈ 0.7
    assert res.best_value > max(3 * untrained, untrained + 0.3), (untrained, res.best_value)
