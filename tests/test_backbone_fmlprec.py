"""FMLP-Rec: the filter and the whole backbone against the paper's formulas written out
directly, its capabilities (non-causal, padding-invariant, bounded), and a short run that learns.

The shared contract checks run in tests/test_backbones.py (``-k fmlprec``).
"""

from __future__ import annotations

import cmath
import math

import pytest
import torch

from padrec.config import ConfigError
from padrec.data import SplitConfig, compute_item_stats, make_split
from padrec.evaluation import EvalConfig
from padrec.experiment import load_experiment_config
from padrec.methods import METHODS, MethodContext
from padrec.models.backbones import BACKBONES
from padrec.models.backbones.fmlprec import FMLPRec, FMLPRecConfig
from padrec.training.trainer import TrainConfig, Trainer, set_seed

D, N = 16, 8


pytestmark = pytest.mark.usefixtures("single_thread")


def build(max_len: int = N, seed: int = 0, **kw) -> FMLPRec:
    torch.manual_seed(seed)
    return FMLPRec(FMLPRecConfig(hidden_size=D, max_len=max_len, **kw)).eval()


# ---- direct reference of the paper's formulas ------------------------------------------------


def naive_filter(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The filter on one window h (N×d, float64) by the DFT written out:
    X_k = N^-1/2 Σ_t h_t e^{-2πikt/N} (k = 0..N//2), Y_k = X_k W_k, and the inverse of the
    Hermitian spectrum (Y_{N-k} = conj Y_k): y_t = N^-1/2 Re Σ_{k=0}^{N-1} Y_k e^{2πikt/N}."""
    n, d = h.shape
    w = torch.complex(weight[..., 0], weight[..., 1]).to(torch.complex128)  # (N//2+1)×d
    y_half = []
    for k in range(n // 2 + 1):
        x_k = sum(h[t].to(torch.complex128) * cmath.exp(-2j * math.pi * k * t / n) for t in range(n)) / math.sqrt(n)
        y_half.append(x_k * w[k])
    full = [y_half[k] if k <= n // 2 else y_half[n - k].conj() for k in range(n)]
    out = torch.zeros(n, d, dtype=torch.float64)
    for t in range(n):
        out[t] = sum(full[k] * cmath.exp(2j * math.pi * k * t / n) for k in range(n)).real / math.sqrt(n)
    return out


def layer_norm(v: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + norm.eps) * norm.weight.double() + norm.bias.double()


def reference_forward(model: FMLPRec, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """One history x (L×d), pad (L): left-pad to the N-window, H = LN(x + P), then per block
    H[pad] = 0, H = LN(H + filter(H)), H = LN(H + W2 GELU(W1 H + b1) + b2); last L rows."""
    n, L = model.config.max_len, x.shape[0]
    win = torch.cat([torch.zeros(n - L, x.shape[1], dtype=torch.float64), x.double()])
    mask = torch.cat([torch.ones(n - L, dtype=torch.bool), pad])
    win[mask] = 0.0
    h = layer_norm(win + model.position.weight.double(), model.input_norm)
    for block in model.blocks:
        h = torch.where(mask[:, None], 0.0, h)
        h = layer_norm(h + naive_filter(h, block.filter.weight.double()), block.filter.norm)
        lin1, lin2 = block.ffn.net[0], block.ffn.net[2]
        inner = h @ lin1.weight.double().T + lin1.bias.double()
        inner = 0.5 * inner * (1 + torch.erf(inner / math.sqrt(2)))
        h = layer_norm(h + inner @ lin2.weight.double().T + lin2.bias.double(), block.ffn.norm)
    h = torch.where(mask[:, None], 0.0, h)
    return h[-L:]


@pytest.mark.parametrize("n", [8, 7])
def test_filter_layer_matches_the_dft_formula(n: int) -> None:
    """Even and odd windows; a short input (5 of n rows) is the window's last rows."""
    layer = build(max_len=n).blocks[0].filter
    with torch.no_grad():
        layer.weight.normal_()  # larger than the 0.02 init, so the filter dominates
    h = torch.randn(2, 5, D)
    got = layer.filter(h)
    for b in range(2):
        window = torch.cat([torch.zeros(n - 5, D, dtype=torch.float64), h[b].double()])
        expected = naive_filter(window, layer.weight.detach().double())[-5:]
        torch.testing.assert_close(got[b].double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("L", [N, 6])
def test_backbone_matches_reference_forward(L: int) -> None:
    model = build(num_layers=2)
    with torch.no_grad():  # make the filters and biases matter
        for block in model.blocks:
            block.filter.weight.normal_(0.0, 0.5)
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, L, D, generator=g)
    n_pad = torch.tensor([0, 2, L - 1])
    pad = torch.arange(L)[None, :] < n_pad[:, None]
    x[pad] = 50.0  # padded content must not matter
    with torch.no_grad():
        y = model(x, pad)
        for b in range(3):
            expected = reference_forward(model, x[b], pad[b])
            torch.testing.assert_close(y[b].double(), expected, atol=1e-5, rtol=1e-5)


# ---- capabilities ------------------------------------------------------------------------


def test_capability_flags_and_filter_parameters() -> None:
    assert (FMLPRec.causal, FMLPRec.adds_positions, FMLPRec.bounded_output) == (False, True, True)
    torch.manual_seed(0)
    model = FMLPRec(FMLPRecConfig(hidden_size=64, max_len=50))
    weights = [block.filter.weight for block in model.blocks]
    assert len(weights) == 2 and all(w.shape == (26, 64, 2) for w in weights)
    assert all(abs(w.std().item() - 0.02) < 0.002 for w in weights)
    assert not torch.equal(weights[0], weights[1])  # each layer draws its own filter
    assert model.blocks[0].ffn.net[0].out_features == 256
    assert isinstance(model.blocks[0].ffn.net[1], torch.nn.GELU)
    assert model.config.dropout == 0.5 and model.config.layer_norm_eps == 1e-12


def test_not_causal_every_position_sees_the_future() -> None:
    model = build()
    x = torch.randn(1, N, D)
    pad = torch.zeros(1, N, dtype=torch.bool)
    x2 = x.clone()
    x2[:, -1] = torch.randn(D)
    y, y2 = model(x, pad), model(x2, pad)
    assert all(not torch.allclose(y[0, t], y2[0, t], atol=1e-6) for t in range(N - 1))


def test_non_causal_backbone_trains_on_prefixes() -> None:
    cfg = load_experiment_config({"method": "sequential", "method_config": {"backbone": "fmlprec"}})
    assert cfg.split.train_examples == "prefixes"
    with pytest.raises(ConfigError, match="shifted"):
        load_experiment_config(
            {"method": "sequential", "method_config": {"backbone": "fmlprec"}, "split": {"train_examples": "shifted"}}
        )


def test_left_padding_and_window_length_do_not_change_real_outputs() -> None:
    """A history gives the same outputs at its real positions with any amount of left
    padding, passed as an L = N window or a shorter one (internally the same N-window)."""
    model = build()
    real = torch.randn(1, 3, D)
    alone = model(real, torch.zeros(1, 3, dtype=torch.bool))
    for L in (N, 5):
        x = torch.cat([100 * torch.randn(1, L - 3, D), real], dim=1)
        pad = torch.arange(L)[None, :] < L - 3
        y = model(x, pad)
        torch.testing.assert_close(y[:, -3:], alone)
        assert torch.all(y[:, : L - 3] == 0)


def test_positions_are_added_and_right_aligned() -> None:
    """The same item at every position gives different outputs per position (positions), and
    the most recent item uses the last row of the position table."""
    model = build()
    x = torch.randn(1, 1, D).expand(1, N, D)
    y = model(x, torch.zeros(1, N, dtype=torch.bool))
    assert not torch.allclose(y[0, 0], y[0, 1])
    with torch.no_grad():
        model.position.weight[-1].add_(1.0)
    assert not torch.allclose(model(x[:, :2], torch.zeros(1, 2, dtype=torch.bool))[0, -1], y[0, -1])


def test_output_is_bounded_whatever_the_input_scale() -> None:
    model = build()
    x, pad = torch.randn(2, N, D), torch.zeros(2, N, dtype=torch.bool)
    for scale in (1e-3, 1.0, 1e4):
        y = model(scale * x, pad)
        assert torch.isfinite(y).all() and y.norm(dim=-1).max() <= math.sqrt(D) * 1.01


def test_config_validation_and_too_long_input() -> None:
    for bad in ({"num_layers": 0}, {"ffn_multiplier": 0}, {"layer_norm_eps": 0.0}, {"activation": "tanh"}):
        with pytest.raises(ConfigError):
            BACKBONES.build("fmlprec", {"hidden_size": D, "max_len": N, **bad})
    with pytest.raises(ValueError, match="max_len"):
        build()(torch.randn(1, N + 1, D), torch.zeros(1, N + 1, dtype=torch.bool))


# ---- a short training run ------------------------------------------------------------------


def test_training_learns_the_chain(toy_dataset, tmp_path) -> None:
    split = make_split(toy_dataset, SplitConfig(max_len=10, train_examples="prefixes"))
    ctx = MethodContext(toy_dataset.num_items, split.config.max_len, compute_item_stats(toy_dataset))
    set_seed(0)
    method = METHODS.build("sequential", {"backbone": "fmlprec", "hidden_size": 16}, context=ctx)
    train_cfg = TrainConfig(epochs=3, batch_size=32, lr=5e-3, progress=False, monitor="NDCG@5")
    trainer = Trainer(method, split, train_cfg, EvalConfig(ks=[5]))
    untrained = trainer.validate(split.valid).main()
    res = trainer.fit("train", tmp_path / "t", "fp")
    assert res.history[-1]["loss_rec"] < res.history[0]["loss_rec"]
    # ~uniform popularity over 40 items: untrained NDCG@5 ≈ 0.07-0.11; trained ≈ 0.7 (seeds 0-2)
    assert res.best_value > untrained + 0.3, (untrained, res.history)
