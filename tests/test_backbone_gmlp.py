"""gMLP backbone: the Spatial Gating Unit against the paper's formula, the near-identity gate
of a fresh block, end-aligned spatial weights, bounded output, config checks, and a short
training run that learns. (The shared contract is in tests/test_backbones.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from padrec.config import ConfigError
from padrec.data import make_split
from padrec.data.protocols import SplitConfig
from padrec.evaluation import EvalConfig
from padrec.methods import METHODS, MethodContext
from padrec.models.backbones import BACKBONES
from padrec.models.backbones.gmlp import GMLP, GMLPConfig, SpatialGatingUnit
from padrec.training.trainer import TrainConfig, Trainer, set_seed

D, N = 16, 8  # hidden size, max_len


pytestmark = pytest.mark.usefixtures("single_thread")


@torch.no_grad()
def _sgu_reference(sgu: SpatialGatingUnit, z: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """s(Z)[t] = Z1[t] ⊙ (b[n-L+t] + Σ_{s<=t, s real} W[n-L+t, n-L+s] · LN(Z2)[s]), by loops."""
    B, L, d_ffn = z.shape
    n, c = sgu.weight.shape[0], d_ffn // 2
    gamma, beta, eps = sgu.norm.weight, sgu.norm.bias, sgu.norm.eps
    out = torch.zeros(B, L, c)
    for b in range(B):
        for t in range(L):
            u = z[b, t, :c]
            gate = torch.full((c,), float(sgu.bias[n - L + t]))
            for s in range(t + 1):
                if pad[b, s]:
                    continue
                v = z[b, s, c:]
                v_norm = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + eps) * gamma + beta
                gate = gate + sgu.weight[n - L + t, n - L + s] * v_norm
            out[b, t] = u * gate
    return out


@pytest.mark.parametrize("L", [N, 5])
def test_spatial_gating_unit_matches_the_papers_formula(L: int) -> None:
    """Causal mask, end-aligned W/b for L < max_len, LN on Z2 only, padded Z2 left out."""
    torch.manual_seed(0)
    sgu = SpatialGatingUnit(d_ffn=6, max_len=N, eps=1e-5, init_std=1e-3).eval()
    with torch.no_grad():  # arbitrary trained-looking values, upper triangle included
        sgu.weight.copy_(torch.randn(N, N))
        sgu.bias.copy_(torch.randn(N))
        sgu.norm.weight.copy_(torch.randn(3))
        sgu.norm.bias.copy_(torch.randn(3))
    z = torch.randn(3, L, 6)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 2, L])[:, None]  # 0, 2 and L padded
    z[pad] = 1000 * torch.randn_like(z[pad])  # padded content must not leak into real positions
    y = sgu(z, pad)
    expected = _sgu_reference(sgu, z, pad)
    torch.testing.assert_close(y[~pad], expected[~pad], atol=1e-5, rtol=1e-5)


def _ffn_update(block, h: torch.Tensor) -> torch.Tensor:
    """What a block adds to h when the gate is exactly 1: the token-wise FFN V·Z1."""
    z = F.gelu(block.proj_in(block.norm(h)))
    return block.proj_out(z[..., : z.shape[-1] // 2])


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm()).detach())


def test_fresh_block_is_a_token_wise_ffn() -> None:
    """W ≈ 0, b = 1 at init: the gate is ≈ 1, so s(Z) ≈ Z1 and a block is h + V·Z1 (the
    paper: 'each gMLP block behaves like a regular FFN at the early stage of training')."""
    torch.manual_seed(0)
    model = GMLP(GMLPConfig(hidden_size=D, max_len=N)).eval()
    block = model.blocks[0]
    W, b = block.sgu.spatial_weights(N)
    assert torch.all(b == 1) and W.abs().max() < 0.01
    assert torch.all(torch.triu(block.sgu.weight, 1) == 0)
    h = torch.randn(2, N, D)
    pad = torch.zeros(2, N, dtype=torch.bool)
    update = block(h, pad) - h
    assert _relative_error(update, _ffn_update(block, h)) < 0.02
    # each token is (nearly) processed on its own: earlier positions barely move the last one
    h2 = h.clone()
    h2[:, :-1] = torch.randn(2, N - 1, D)
    assert _relative_error(block(h2, pad)[:, -1] - h2[:, -1], update[:, -1]) < 0.02
    # the check can fail: a gate that is not ≈ 1 (b = 0) is far from the FFN
    with torch.no_grad():
        block.sgu.bias.zero_()
    assert _relative_error(block(h, pad) - h, _ffn_update(block, h)) > 0.5


def test_left_padding_equals_running_on_real_items() -> None:
    """End-aligned spatial weights: real outputs do not depend on the amount of left padding."""
    torch.manual_seed(0)
    model = GMLP(GMLPConfig(hidden_size=D, max_len=N, spatial_init_std=0.3)).eval()
    real = torch.randn(1, 3, D)
    alone = model(real, torch.zeros(1, 3, dtype=torch.bool))
    for L in (5, N):
        x = torch.cat([torch.randn(1, L - 3, D), real], dim=1)
        pad = torch.arange(L)[None, :] < L - 3
        torch.testing.assert_close(model(x, pad)[:, -3:], alone)


def test_output_is_bounded_whatever_the_input_scale() -> None:
    torch.manual_seed(0)
    model = GMLP(GMLPConfig(hidden_size=D, max_len=N)).eval()
    x = 1e4 * torch.randn(2, N, D)
    y = model(x, torch.zeros(2, N, dtype=torch.bool))
    assert y.norm(dim=-1).max() <= math.sqrt(D) * 1.001  # LayerNorm with weight 1, bias 0


def test_config_checks_and_length_limit() -> None:
    with pytest.raises(ConfigError, match="even"):
        BACKBONES.build("gmlp", {"hidden_size": 5, "ffn_multiplier": 1})
    with pytest.raises(ConfigError):
        BACKBONES.build("gmlp", {"hidden_size": D, "num_layers": 0})
    model = BACKBONES.build("gmlp", {"hidden_size": D, "max_len": N})
    assert len(model.blocks) == 2 and model.blocks[0].proj_in.out_features == 4 * D
    assert model.blocks[0].proj_out.in_features == 2 * D  # d_ffn split in two halves
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randn(1, N + 1, D), torch.zeros(1, N + 1, dtype=torch.bool))


def test_short_training_run_learns(toy_dataset, tmp_path) -> None:
    split = make_split(toy_dataset, SplitConfig(max_len=10))
    set_seed(0)
    m = METHODS.build(
        "sequential", {"backbone": "gmlp", "hidden_size": 16}, context=MethodContext(toy_dataset.num_items, 10)
    )
    cfg = TrainConfig(epochs=3, batch_size=32, lr=5e-3, progress=False, monitor="NDCG@5")
    trainer = Trainer(m, split, cfg, EvalConfig(ks=[5]))
    untrained = trainer.validate(trainer.validation_set()).main("NDCG@5")
    res = trainer.fit("train", tmp_path / "t", "fp")
    losses = [row["loss_rec"] for row in res.history]
    assert losses[-1] < losses[0]
    assert res.best_value > untrained + 0.3, (untrained, res.best_value)


def test_bidirectional_variant_sees_the_whole_window() -> None:
    """``gmlp_bidirectional`` keeps the full W: an early output moves when a later item does,
    and its upper triangle is initialised and used (the causal ``gmlp`` zeroes it)."""
    from padrec.models.backbones import BACKBONES

    torch.manual_seed(0)
    model = BACKBONES.build("gmlp_bidirectional", {"hidden_size": 8, "max_len": N, "spatial_init_std": 0.5}).eval()
    assert not type(model).causal and BACKBONES.get("gmlp").causal
    assert torch.triu(model.blocks[0].sgu.weight, diagonal=1).abs().sum() > 0
    x = torch.randn(1, N, 8)
    pad = torch.zeros(1, N, dtype=torch.bool)
    x2 = x.clone()
    x2[0, -1] = torch.randn(8)
    assert (model(x, pad)[0, 0] - model(x2, pad)[0, 0]).abs().max() > 1e-6
