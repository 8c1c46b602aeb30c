"""NARM: the paper's formulas, prefix-only dependence, exact left padding, prefix training.

The shared contract (zero padding, ignored padded content, finite all-padding rows, ...)
is checked for every registered backbone by ``tests/test_backbones.py``.
"""

from __future__ import annotations

import pytest
import torch

from padrec.config import ConfigError
from padrec.data import SplitConfig, make_split
from padrec.evaluation import EvalConfig
from padrec.experiment import load_experiment_config
from padrec.methods import METHODS, MethodContext
from padrec.models.backbones import BACKBONES
from padrec.models.backbones.narm import NARM, NARMConfig
from padrec.training.trainer import TrainConfig, Trainer, set_seed

D, L = 8, 6


pytestmark = pytest.mark.usefixtures("single_thread")


def build(seed: int = 0, **overrides) -> NARM:
    torch.manual_seed(seed)
    return NARM(NARMConfig(hidden_size=D, max_len=L, **overrides)).eval()


def reference(model: NARM, real: torch.Tensor) -> torch.Tensor:
    """The paper's NARM on one history of real items only (T×d -> T×d), position by position:
    h_j from the GRU, α_tj = vᵀσ(A1 h_t + A2 h_j) for j <= t (softmax-normalised over j for
    ``attention: softmax``), c_l = Σ_j α_tj h_j, out_t = B [h_t ; c_l]."""
    states, _ = model.gru(real.unsqueeze(0))
    h = states[0]
    A1, A2, v, B = model.a1.weight, model.a2.weight, model.v.weight[0], model.b.weight
    outs = []
    for t in range(real.shape[0]):
        alpha = torch.stack([v @ torch.sigmoid(A1 @ h[t] + A2 @ h[j]) for j in range(t + 1)])
        if model.config.attention == "softmax":
            alpha = torch.exp(alpha) / torch.exp(alpha).sum()
        c_local = sum(alpha[j] * h[j] for j in range(t + 1))
        outs.append(B @ torch.cat([h[t], c_local]))
    return torch.stack(outs)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"attention": "softmax"},
        {"gru_hidden_size": 5, "num_layers": 2},
        {"pack_pairs": False},
        {"pack_pairs": False, "attention": "softmax"},
    ],
    ids=["paper", "softmax", "h5-2layers", "dense", "dense-softmax"],
)
def test_matches_the_papers_formulas_at_every_position(overrides: dict) -> None:
    model = build(**overrides)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, L, D, generator=g)
    n_pad = [0, 2, 4]
    pad = torch.arange(L)[None, :] < torch.tensor(n_pad)[:, None]
    y = model(x, pad)
    for b, p in enumerate(n_pad):
        torch.testing.assert_close(y[b, p:], reference(model, x[b, p:]), atol=1e-5, rtol=1e-5)
        assert torch.all(y[b, :p] == 0)


def test_structure_and_defaults() -> None:
    model = BACKBONES.build("narm", {"hidden_size": 16, "max_len": 8})
    assert (model.causal, model.adds_positions, model.bounded_output) == (True, False, True)
    cfg = model.config
    assert (cfg.dropout, cfg.ct_dropout, cfg.num_layers, cfg.attention, cfg.pack_pairs) == (0.25, 0.5, 1, "none", True)
    assert model.gru.hidden_size == 16 and model.gru.bias is False
    assert all(m.bias is None for m in (model.a1, model.a2, model.v, model.b))
    assert (model.b.in_features, model.b.out_features) == (32, 16)
    assert BACKBONES.build("narm", {"hidden_size": 16, "gru_hidden_size": 24}).b.in_features == 48
    for bad in ({"ct_dropout": 1.0}, {"num_layers": 0}, {"attention": "tanh"}, {"gru_hidden_size": 0}):
        with pytest.raises(ConfigError):
            BACKBONES.build("narm", {"hidden_size": 16, **bad})


def test_causal_so_shifted_windows_by_default_and_the_papers_prefixes_on_request() -> None:
    cfg = load_experiment_config({"method": "sequential", "method_config": {"backbone": "narm"}})
    assert cfg.split.train_examples == "shifted"
    cfg = load_experiment_config(
        {"method": "sequential", "method_config": {"backbone": "narm"}, "split": {"train_examples": "prefixes"}}
    )
    assert cfg.split.train_examples == "prefixes"


@pytest.mark.parametrize("attention", ["none", "softmax"])
def test_position_t_ignores_later_positions(attention: str) -> None:
    """Output t is computed from the prefix ending at t (what ``causal = True`` promises)."""
    model = build(attention=attention)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, L, D, generator=g)
    pad = torch.tensor([[False] * L, [True, True] + [False] * (L - 2)])
    y = model(x, pad)
    for t in range(2, L - 1):
        x2 = x.clone()
        x2[:, t + 1 :] = 10 * torch.randn(2, L - t - 1, D, generator=g)
        y2 = model(x2, pad)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1])
        assert not torch.allclose(y2[:, t + 1 :], y[:, t + 1 :])


@pytest.mark.parametrize("attention", ["none", "softmax"])
def test_last_output_independent_of_left_padding(attention: str) -> None:
    model = build(attention=attention)
    g = torch.Generator().manual_seed(7)
    real = torch.randn(1, 3, D, generator=g)
    alone = model(real, torch.zeros(1, 3, dtype=torch.bool))
    for n_pad in (1, 4, 9):
        x = torch.cat([100 * torch.randn(1, n_pad, D, generator=g), real], dim=1)
        pad = torch.arange(n_pad + 3)[None, :] < n_pad
        y = model(x, pad)
        torch.testing.assert_close(y[:, -1], alone[:, -1], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(y[:, -3:], alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(
    "overrides", [{"attention": "softmax"}, {"pack_pairs": False}, {"attention": "softmax", "pack_pairs": False}]
)
def test_variants_padding_and_empty_rows(train: bool, overrides: dict) -> None:
    """The shared checks build the default (packed, unnormalised attention); the variants
    must also ignore padded content and keep all-padding rows finite, forward and backward."""
    model = build(**overrides).train(train)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, L, D, generator=g)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 3, L])[:, None]
    if not train:
        x2 = x.clone()
        x2[pad] = 100 * torch.randn(int(pad.sum()), D, generator=g)
        torch.testing.assert_close(model(x2, pad), model(x, pad))
    x.requires_grad_(True)
    y = model(x, pad)
    assert torch.all(y[pad] == 0) and torch.isfinite(y).all()
    y.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[pad] == 0)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("attention", ["none", "softmax"])
def test_packed_pairs_equal_dense(attention: str) -> None:
    packed = build(attention=attention)
    dense = build(attention=attention, pack_pairs=False)
    dense.load_state_dict(packed.state_dict())
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, L, D, generator=g, requires_grad=True)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 2, L - 1, L])[:, None]
    y = packed(x, pad)
    torch.testing.assert_close(y, dense(x, pad))
    (grad_packed,) = torch.autograd.grad(y.pow(2).sum(), x)
    (grad_dense,) = torch.autograd.grad(dense(x, pad).pow(2).sum(), x)
    torch.testing.assert_close(grad_packed, grad_dense)


def test_short_training_run_learns(toy_dataset, tmp_path) -> None:
    split = make_split(toy_dataset, SplitConfig(max_len=10, train_examples="prefixes"))

    def method(seed: int):
        set_seed(seed)
        return METHODS.build(
            "sequential",
            {"backbone": "narm", "hidden_size": 16},
            context=MethodContext(toy_dataset.num_items, 10),
        )

    cfg = TrainConfig(epochs=3, batch_size=32, lr=5e-3, progress=False, monitor="NDCG@5")
    untrained = Trainer(method(0), split, cfg, EvalConfig(ks=[5]))
    before = untrained.validate(untrained.validation_set()).main()
    res = Trainer(method(0), split, cfg, EvalConfig(ks=[5])).fit("train", tmp_path / "t", "fp")
    losses = [row["loss_rec"] for row in res.history]
    assert losses[-1] < losses[0]
    # Random scores give NDCG@5 ≈ 0.08 on 40 items; the item chain is learnable.
    assert res.best_value > before + 0.25
