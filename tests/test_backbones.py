"""Common checks every registered backbone must pass, plus backbone-specific ones.

A backbone registered later is picked up by the common checks automatically with a tiny
default config; add an entry to ``CASES`` to test its variants.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file, save_file

from padrec.config import ConfigError
from padrec.models.backbones import BACKBONES, Backbone
from padrec.models.backbones.caser import Caser, CaserConfig
from padrec.models.backbones.gru4rec import GRU4Rec, GRU4RecConfig
from padrec.models.backbones.sasrec import SASRec, SASRecConfig

D, L, B = 16, 8, 5
TINY = {"hidden_size": D, "max_len": L}

CASES: dict[str, tuple[str, dict]] = {
    "sasrec": ("sasrec", {**TINY, "num_layers": 2, "num_heads": 2}),
    "sasrec-dense": ("sasrec", {**TINY, "pack_padding": False}),
    "sasrec-no-positions": ("sasrec", {**TINY, "position_embedding": False, "input_dropout": 0.0}),
    "sasrec-preln-scaled": (
        "sasrec",
        {**TINY, "norm_first": True, "scale_input": True, "activation": "relu"},
    ),
    "sasrec-release": (
        "sasrec",
        {
            **TINY,
            "num_layers": 2,
            "attention_bias": False,
            "init": "xavier_normal",
            "activation": "relu",
            "layer_norm_eps": 1e-6,
        },
    ),
    "gru4rec": ("gru4rec", {**TINY}),
    "gru4rec-2layer-bias": ("gru4rec", {**TINY, "num_layers": 2, "gru_hidden_size": 12, "bias": True}),
    "caser": ("caser", {**TINY, "window": 3, "num_h": 4, "num_v": 2}),
    "caser-v-only": ("caser", {**TINY, "window": 2, "num_h": 0, "num_v": 3, "fc_activation": "identity"}),
    "caser-h-only": ("caser", {**TINY, "window": 4, "num_h": 3, "num_v": 0, "conv_activation": "tanh"}),
}
for _name in BACKBONES.names():
    if not any(name == _name for name, _ in CASES.values()):
        CASES[_name] = (_name, dict(TINY))


pytestmark = pytest.mark.usefixtures("single_thread")


def build(case: str, seed: int = 0) -> Backbone:
    name, cfg = CASES[case]
    torch.manual_seed(seed)
    return BACKBONES.build(name, dict(cfg))


def inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """x: B×L×D; rows have 0, 3, L-1, L (all) and 5 positions of left padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D, generator=g)
    n_pad = torch.tensor([0, 3, L - 1, L, 5])
    pad_mask = torch.arange(L)[None, :] < n_pad[:, None]
    return x, pad_mask


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return request.param


def test_capabilities_are_declared(case: str) -> None:
    cls = type(build(case))
    for flag in ("causal", "adds_positions", "bounded_output"):
        assert isinstance(getattr(cls, flag), bool), flag


def test_output_shape_and_dtype(case: str) -> None:
    model = build(case)
    x, pad = inputs()
    y = model(x, pad)
    assert y.shape == (B, L, D)
    assert y.dtype == x.dtype


@pytest.mark.parametrize("causal_case", [c for c in CASES if BACKBONES.get(CASES[c][0]).causal])
def test_causal(causal_case: str) -> None:
    """Where a backbone claims causality, no output depends on a later position."""
    model = build(causal_case).eval()
    x, pad = inputs()
    y = model(x, pad)
    for t in range(L - 1):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
        y2 = model(x2, pad)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1])
        assert not torch.allclose(y2[0, t + 1 :], y[0, t + 1 :])


def test_padding_outputs_zero_and_content_ignored(case: str) -> None:
    model = build(case).eval()
    x, pad = inputs()
    y = model(x, pad)
    assert torch.all(y[pad] == 0)
    x2 = x.clone()
    x2[pad] = 100 * torch.randn_like(x2[pad])
    torch.testing.assert_close(model(x2, pad), y)


@pytest.mark.parametrize("train", [False, True])
def test_fully_padded_rows_finite(case: str, train: bool) -> None:
    model = build(case).train(train)
    x, pad = inputs()
    pad[:] = True
    x.requires_grad_(True)
    y = model(x, pad)
    assert torch.isfinite(y).all() and torch.all(y == 0)
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_eval_deterministic(case: str) -> None:
    model = build(case).eval()
    x, pad = inputs()
    torch.testing.assert_close(model(x, pad), model(x, pad), rtol=0, atol=0)


def test_gradients_reach_inputs_and_parameters(case: str) -> None:
    model = build(case).train()
    x, pad = inputs()
    x.requires_grad_(True)
    (model(x, pad) ** 2).sum().backward()
    assert torch.all(x.grad[~pad].abs().sum(-1) > 0)
    assert torch.all(x.grad[pad] == 0)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_safetensors_round_trip(case: str, tmp_path) -> None:
    model = build(case, seed=0).eval()
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    other = build(case, seed=123).eval()
    other.load_state_dict(load_file(str(path)))
    x, pad = inputs()
    torch.testing.assert_close(other(x, pad), model(x, pad))


def test_build_from_dict_and_unknown_key(case: str) -> None:
    name, cfg = CASES[case]
    model = BACKBONES.build(name, dict(cfg))
    assert isinstance(model, BACKBONES.get(name))
    assert dataclasses.asdict(model.config)["hidden_size"] == D
    with pytest.raises(ConfigError, match="hiden_size"):
        BACKBONES.build(name, {**cfg, "hiden_size": 4})


def test_shorter_histories_than_max_len(case: str) -> None:
    model = build(case).eval()
    x, pad = inputs()
    y = model(x[:, -4:], pad[:, -4:])
    assert y.shape == (B, 4, D) and torch.isfinite(y).all()


# ---- backbone-specific checks -------------------------------------------------------------


@pytest.mark.parametrize("case", ["sasrec", "sasrec-preln-scaled", "gru4rec", "caser"])
def test_left_padding_equals_running_on_real_items(case: str) -> None:
    """Outputs at real positions do not depend on how much left padding precedes them."""
    model = build(case).eval()
    x, _ = inputs()
    real = x[:1, -4:]  # 4 real items
    alone = model(real, torch.zeros(1, 4, dtype=torch.bool))
    padded_x = torch.cat([torch.randn(1, L - 4, D), real], dim=1)
    padded_mask = torch.arange(L)[None, :] < L - 4
    torch.testing.assert_close(model(padded_x, padded_mask)[:, -4:], alone)


def test_gru_left_padding_matches_plain_gru() -> None:
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(hidden_size=D, max_len=L, num_layers=2, dropout=0.3)).eval()
    real = torch.randn(1, 3, D)
    states, _ = model.gru(real)
    expected = model.proj(states)
    x = torch.cat([torch.randn(1, L - 3, D), real], dim=1)
    pad = torch.arange(L)[None, :] < L - 3
    torch.testing.assert_close(model(x, pad)[:, -3:], expected)


def test_gru_with_bias_is_perturbed_by_padding() -> None:
    """Documented limitation: with gate biases, leading padding moves the initial state."""
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(hidden_size=D, max_len=L, bias=True)).eval()
    with torch.no_grad():
        for name, p in model.gru.named_parameters():
            if name.startswith("bias"):
                p.fill_(0.5)
    real = torch.randn(1, 3, D)
    alone = model(real, torch.zeros(1, 3, dtype=torch.bool))
    padded = model(torch.cat([torch.zeros(1, 2, D), real], 1), torch.tensor([[True, True, False, False, False]]))
    assert not torch.allclose(padded[:, -3:], alone)


def test_sasrec_pad_release_preset() -> None:
    cfg = SASRecConfig.pad_release(max_len=20)
    assert (cfg.hidden_size, cfg.max_len, cfg.num_layers, cfg.num_heads, cfg.dropout) == (128, 20, 5, 2, 0.1)
    assert cfg.norm_first is False and cfg.activation == "relu" and cfg.ffn_multiplier == 4
    assert cfg.input_layer_norm and cfg.layer_norm_eps == 1e-6 and not cfg.scale_input
    assert cfg.attention_bias is False and cfg.init == "xavier_normal"
    model = SASRec(cfg)
    assert len(model.blocks) == 5
    assert model.blocks[0].attention.qkv.bias is None
    assert model.blocks[0].ffn.net[0].out_features == 512
    assert isinstance(model.blocks[0].ffn.net[1], torch.nn.ReLU)
    assert isinstance(model.final_norm, torch.nn.Identity)
    # Xavier-normal of each d×d q/k/v slice: std sqrt(2 / (d + d)) = 1/sqrt(128)
    q = model.blocks[0].attention.qkv.weight[:128]
    assert abs(q.std().item() - 128**-0.5) < 0.01
    y = model.eval()(torch.randn(2, 20, 128), torch.zeros(2, 20, dtype=torch.bool))
    assert y.shape == (2, 20, 128)


@pytest.mark.parametrize("norm_first,positions", [(False, True), (True, True), (False, False)])
def test_sasrec_packed_equals_dense(norm_first: bool, positions: bool) -> None:
    cfg = SASRecConfig(hidden_size=D, max_len=L, norm_first=norm_first, scale_input=True, position_embedding=positions)
    torch.manual_seed(0)
    packed = SASRec(cfg).eval()
    dense = SASRec(dataclasses.replace(cfg, pack_padding=False)).eval()
    dense.load_state_dict(packed.state_dict())
    x, pad = inputs()
    x.requires_grad_(True)
    y = packed(x, pad)
    torch.testing.assert_close(y, dense(x, pad))
    (grad_packed,) = torch.autograd.grad(y.pow(2).sum(), x)
    (grad_dense,) = torch.autograd.grad(dense(x, pad).pow(2).sum(), x)
    torch.testing.assert_close(grad_packed, grad_dense)


def test_sasrec_without_positions_is_blind_to_order() -> None:
    """position_embedding False: without the caller's positions, one block's last position
    attends to the window as a set of items."""
    torch.manual_seed(0)
    one = {"hidden_size": D, "max_len": L, "num_layers": 1}
    model = SASRec(SASRecConfig(**one, position_embedding=False, input_dropout=0.0)).eval()
    assert model.position is None and model.input_dropout.p == 0.0
    x, no_pad = torch.randn(1, L, D), torch.zeros(1, L, dtype=torch.bool)
    with torch.no_grad():
        y = model(x, no_pad)
        # the last position attends to the whole window: permuting the earlier items leaves it unchanged
        perm = torch.cat([torch.randperm(L - 1), torch.tensor([L - 1])])
        torch.testing.assert_close(model(x[:, perm], no_pad)[:, -1], y[:, -1])
        with_positions = SASRec(SASRecConfig(**one)).eval()
        assert not torch.allclose(with_positions(x[:, perm], no_pad)[:, -1], with_positions(x, no_pad)[:, -1])


def test_sasrec_pre_ln_has_final_norm_and_config_validation() -> None:
    model = SASRec(SASRecConfig(hidden_size=D, max_len=L, norm_first=True))
    assert isinstance(model.final_norm, torch.nn.LayerNorm)
    with pytest.raises(ConfigError):
        BACKBONES.build("sasrec", {"hidden_size": 10, "num_heads": 3})
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randn(1, L + 1, D), torch.zeros(1, L + 1, dtype=torch.bool))


def _caser_reference(model: Caser, x: torch.Tensor, t: int) -> torch.Tensor:
    """Caser's original formulation on the single w×d image of rows t-w+1..t (zeros before 0)."""
    w, d = model.config.window, x.shape[-1]
    image = torch.zeros(w, d)
    rows = x[0, max(0, t - w + 1) : t + 1]
    image[w - rows.shape[0] :] = rows
    h_feats = []
    for h, conv in enumerate(model.horizontal, start=1):
        per_offset = [
            model.conv_activation((conv.weight * image[i : i + h].T).sum((1, 2)) + conv.bias) for i in range(w - h + 1)
        ]
        h_feats.append(torch.stack(per_offset).max(0).values)
    v_feats = (model.vertical_weight @ image + model.vertical_bias[:, None]).reshape(-1)
    return model.fc_activation(model.fc(torch.cat(h_feats + [v_feats])))


def test_caser_matches_per_window_formulation() -> None:
    torch.manual_seed(0)
    model = Caser(CaserConfig(hidden_size=D, max_len=L, window=3, num_h=4, num_v=2)).eval()
    x = torch.randn(1, L, D)
    y = model(x, torch.zeros(1, L, dtype=torch.bool))
    for t in range(L):
        torch.testing.assert_close(y[0, t], _caser_reference(model, x, t), atol=1e-5, rtol=1e-5)


def test_caser_window_limits_receptive_field() -> None:
    torch.manual_seed(0)
    w = 3
    model = Caser(CaserConfig(hidden_size=D, max_len=L, window=w)).eval()
    x = torch.randn(1, L, D)
    pad = torch.zeros(1, L, dtype=torch.bool)
    y = model(x, pad)
    x2 = x.clone()
    x2[:, : L - w] = torch.randn(1, L - w, D)  # outside the last position's window
    y2 = model(x2, pad)
    torch.testing.assert_close(y2[:, -1], y[:, -1])
    assert not torch.allclose(y2[:, L - w], y[:, L - w])
