"""LightSANs against naive references written from the paper's formulas, its padding and
position handling, its non-causal training set-up and a short training run that learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from padrec.config import ConfigError
from padrec.data import SplitConfig, make_split
from padrec.evaluation import EvalConfig
from padrec.experiment import load_experiment_config
from padrec.methods import METHODS, MethodContext
from padrec.models.backbones import BACKBONES
from padrec.models.backbones.lightsans import LightSANs, LightSANsConfig
from padrec.training.trainer import TrainConfig, Trainer, set_seed

D, L, MAX_LEN, HEADS, K = 8, 6, 9, 2, 3
ATOL = dict(atol=1e-5, rtol=1e-5)


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny(seed: int = 0, **kw) -> LightSANs:
    torch.manual_seed(seed)
    cfg = dict(hidden_size=D, max_len=MAX_LEN, num_heads=HEADS, k_interests=K, **kw)
    model = LightSANs(LightSANsConfig(**cfg)).eval()
    with torch.no_grad():  # sharper attention than at init, non-trivial biases and LayerNorm affines
        for name, p in model.named_parameters():
            if "interests" in name:
                continue
            if "bias" in name or "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.5)
    return model


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """x: 3×L×D; rows with 0, 2 and L-1 positions of left padding (L < MAX_LEN)."""
    g = torch.Generator().manual_seed(seed)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 2, L - 1])[:, None]
    return torch.randn(3, L, D, generator=g), pad


# ---- naive references, one history and one head at a time, real positions only ----------


def ref_interests(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """n×d real rows -> k×d: interest j = sum_t a_tj x_t with a_tj = exp(x_t·θ_j) / sum_s exp(x_s·θ_j)."""
    out = torch.zeros(theta.shape[1], x.shape[1])
    for j in range(theta.shape[1]):
        logits = torch.stack([x[t] @ theta[:, j] for t in range(x.shape[0])])
        a = torch.exp(logits - logits.max())
        a = a / a.sum()
        out[j] = sum(a[t] * x[t] for t in range(x.shape[0]))
    return out


def ref_attend(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """softmax_j(q_i·k_j / sqrt(d_h)) weighted sum of v_j, query by query."""
    out = torch.zeros(queries.shape[0], values.shape[1])
    for i in range(queries.shape[0]):
        s = torch.stack([queries[i] @ keys[j] / math.sqrt(queries.shape[1]) for j in range(keys.shape[0])])
        w = torch.exp(s - s.max())
        w = w / w.sum()
        out[i] = sum(w[j] * values[j] for j in range(keys.shape[0]))
    return out


def split_heads(x: torch.Tensor) -> list[torch.Tensor]:
    return list(x.chunk(HEADS, dim=-1))


def ref_item_attention(att, q, k, v) -> torch.Tensor:
    """n×d projected q, k, v of one history -> n×d (heads concatenated)."""
    kt, vt = ref_interests(k, att.key_interests), ref_interests(v, att.value_interests)
    return torch.cat([ref_attend(a, b, c) for a, b, c in zip(split_heads(q), split_heads(kt), split_heads(vt))], -1)


def ref_position_attention(att, v, positions) -> torch.Tensor:
    """n×d projected values of one history and its n position rows -> n×d."""
    p = F.layer_norm(positions, (D,), att.position_norm.weight, att.position_norm.bias, att.position_norm.eps)
    pq, pk = att.position_query(p), att.position_key(p)
    return torch.cat([ref_attend(a, b, c) for a, b, c in zip(split_heads(pq), split_heads(pk), split_heads(v))], -1)


def ref_backbone(model: LightSANs, x: torch.Tensor) -> torch.Tensor:
    """The whole backbone on the n real items of one history (n×d), no padding anywhere."""
    n, eps = x.shape[0], model.config.layer_norm_eps
    positions = model.position.weight[MAX_LEN - n :]  # the last item gets the last row
    h = F.layer_norm(x, (D,), model.input_norm.weight, model.input_norm.bias, eps)
    for layer in model.layers:
        att = layer.attention
        w, b = att.qkv.weight, att.qkv.bias
        q, k, v = (h @ w[i * D : (i + 1) * D].T + b[i * D : (i + 1) * D] for i in range(3))
        context = ref_item_attention(att, q, k, v) + ref_position_attention(att, v, positions)
        h = F.layer_norm(h + att.out(context), (D,), layer.norm1.weight, layer.norm1.bias, eps)
        ffn = layer.ffn[2](F.gelu(layer.ffn[0](h)))
        h = F.layer_norm(h + ffn, (D,), layer.norm2.weight, layer.norm2.bias, eps)
    return h


# ---- the formulas ---------------------------------------------------------------------------


@torch.no_grad()
def test_item_to_interest_attention_matches_reference() -> None:
    att = tiny().layers[0].attention
    x, pad = batch()
    q, k, v = (torch.randn(3, L, D, generator=torch.Generator().manual_seed(s)) for s in (2, 3, 4))
    k[pad], v[pad] = 1e4, -1e4  # padding takes no interest weight
    got = att.item_attention(q, k, v, pad).transpose(1, 2).flatten(2)  # B×L×d
    for b in range(3):
        real = ~pad[b]
        torch.testing.assert_close(got[b, real], ref_item_attention(att, q[b, real], k[b, real], v[b, real]), **ATOL)


@torch.no_grad()
def test_decoupled_position_attention_matches_reference() -> None:
    model = tiny()
    att = model.layers[0].attention
    _, pad = batch()
    v = torch.randn(3, L, D, generator=torch.Generator().manual_seed(5))
    v[pad] = 1e4  # padded keys take no position weight
    positions = model.position.weight[MAX_LEN - L :]
    allowed = (~pad[:, None, :] | torch.eye(L, dtype=torch.bool)).unsqueeze(1)
    got = att.position_attention(v, positions, allowed).transpose(1, 2).flatten(2)
    for b in range(3):
        real = ~pad[b]
        torch.testing.assert_close(got[b, real], ref_position_attention(att, v[b, real], positions[real]), **ATOL)


@torch.no_grad()
def test_whole_backbone_matches_reference_on_real_items() -> None:
    """Both branches summed before the output projection, post-LN layers, right-aligned positions."""
    model = tiny(num_layers=2)
    x, pad = batch()
    y = model(x, pad)
    for b in range(3):
        real = ~pad[b]
        torch.testing.assert_close(y[b, real], ref_backbone(model, x[b, real]), **ATOL)
    assert torch.all(y[pad] == 0)


def test_reference_can_fail() -> None:
    """The reference would catch left-aligned positions (rows 0..n-1 for n items)."""
    model = tiny()
    x = torch.randn(4, D)
    with torch.no_grad():
        got = model(x[None], torch.zeros(1, 4, dtype=torch.bool))[0]
        torch.testing.assert_close(got, ref_backbone(model, x), **ATOL)
        model.position.weight.copy_(model.position.weight.roll(MAX_LEN - 4, 0))  # rows 0..3 where 5..8 were
        assert not torch.allclose(got, ref_backbone(model, x), atol=1e-3)


# ---- padding, positions, capabilities -------------------------------------------------------


@pytest.mark.parametrize("train", [False, True])
def test_real_outputs_invariant_to_padded_content(train: bool) -> None:
    model = tiny().train(train)
    x, pad = batch()
    noisy = x.clone()
    noisy[pad] = 1e3 * torch.randn_like(noisy[pad])
    torch.manual_seed(7)  # same dropout masks in both calls
    y = model(x, pad)
    torch.manual_seed(7)
    torch.testing.assert_close(model(noisy, pad), y, atol=0, rtol=0)
    assert torch.all(y[pad] == 0)


@torch.no_grad()
def test_left_padding_equals_running_on_real_items() -> None:
    model = tiny()
    real = torch.randn(1, 4, D)
    alone = model(real, torch.zeros(1, 4, dtype=torch.bool))
    padded = model(torch.cat([torch.randn(1, MAX_LEN - 4, D), real], 1), torch.arange(MAX_LEN)[None] < MAX_LEN - 4)
    torch.testing.assert_close(padded[:, -4:], alone, **ATOL)


@torch.no_grad()
def test_not_causal_and_order_aware() -> None:
    """Declared ``causal = False`` truthfully: the last item moves the first output. Positions
    matter: without them the layer would be permutation-equivariant (interests are order-free)."""
    assert LightSANs.causal is False and LightSANs.adds_positions and LightSANs.bounded_output
    model = tiny()
    x = torch.randn(1, L, D)
    pad = torch.zeros(1, L, dtype=torch.bool)
    y = model(x, pad)
    x2 = x.clone()
    x2[:, -1] = torch.randn(D)
    assert not torch.allclose(model(x2, pad)[:, 0], y[:, 0])
    assert not torch.allclose(model(x.flip(1), pad).flip(1), y, atol=1e-4)
    with torch.no_grad():
        model.position.weight.zero_()  # all positions alike: reversing the input reverses the output
    torch.testing.assert_close(model(x.flip(1), pad).flip(1), model(x, pad), **ATOL)


def test_config_validation_and_defaults() -> None:
    cfg = LightSANsConfig()
    assert (cfg.num_layers, cfg.num_heads, cfg.k_interests, cfg.ffn_multiplier, cfg.activation) == (2, 2, 5, 4, "gelu")
    model = BACKBONES.build("lightsans", {"hidden_size": 16, "max_len": 8})
    assert model.layers[0].attention.key_interests.shape == (16, 5)
    assert model.layers[0].ffn[0].out_features == 64
    for bad in ({"hidden_size": 10, "num_heads": 3}, {"k_interests": 0}, {"num_layers": 0}, {"attention_dropout": 1.0}):
        with pytest.raises(ConfigError):
            BACKBONES.build("lightsans", bad)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randn(1, 9, 16), torch.zeros(1, 9, dtype=torch.bool))


def test_experiment_trains_on_prefixes() -> None:
    cfg = load_experiment_config({"method": "sequential", "method_config": {"backbone": "lightsans"}})
    assert cfg.split.train_examples == "prefixes"
    with pytest.raises(ConfigError, match="non-causal"):
        load_experiment_config(
            {
                "method": "sequential",
                "split": {"train_examples": "shifted"},
                "method_config": {"backbone": "lightsans"},
            }
        )


# ---- learning ----------------------------------------------------------------------------


def test_short_training_run_learns(toy_dataset, tmp_path) -> None:
    split = make_split(toy_dataset, SplitConfig(max_len=10, train_examples="prefixes"))
    set_seed(0)
    m = METHODS.build(
        "sequential", {"backbone": "lightsans", "hidden_size": 16}, context=MethodContext(toy_dataset.num_items, 10)
    )
    tcfg = TrainConfig(epochs=3, batch_size=32, lr=5e-3, progress=False, monitor="NDCG@5")
    trainer = Trainer(m, split, tcfg, EvalConfig(ks=[5]))
    untrained = trainer.validate(split.valid).main()
    res = trainer.fit("train", tmp_path / "t", "fp")
    assert res.history[-1]["loss_rec"] < res.history[0]["loss_rec"]
    assert res.best_value > max(0.4, untrained + 0.3), (untrained, res.best_value)  # measured ~0.03-0.1 -> ~0.73
