"""FAERec: the projection, PCA initialisation, the gate, both item sides, the two alignment
losses, the curriculum, the ablation switches, end-to-end training and every backbone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.experiment import Prepared, load_experiment_config, run_experiment
from padrec.losses.barlow import barlow_twins, grouped_barlow_twins, median_split
from padrec.losses.contrastive import item_info_nce
from padrec.methods import METHODS, MethodContext, StepInfo, TrainBatch
from padrec.methods.faerec import curriculum_weights
from padrec.models.backbones import BACKBONES
from padrec.models.items import ITEM_REPRESENTATIONS, build_items
from padrec.models.items.base import ItemContext
from padrec.models.items.faerec import FAERecItems, FAERecItemsConfig, ProjectionMLP

D = 16  # text width
DIM = 8  # d


@pytest.fixture
def text(toy_dataset) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(toy_dataset.num_items + 1, D, generator=g)
    t[0] = 0
    return t


@pytest.fixture
def prepared(toy_dataset, text) -> Prepared:
    split = make_split(toy_dataset, SplitConfig(max_len=10))
    return Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, text, {})


def build(prepared: Prepared, **cfg):
    torch.manual_seed(0)
    ctx = MethodContext(prepared.dataset.num_items, 10, prepared.stats, prepared.text_embeddings)
    return METHODS.build("faerec", {"hidden_size": DIM, **cfg}, context=ctx)


def batch_of(prepared: Prepared, n: int = 16) -> TrainBatch:
    return TrainBatch(
        torch.as_tensor(prepared.split.train_inputs[:n]),
        torch.as_tensor(prepared.split.train_targets[:n]),
        torch.zeros(n, dtype=torch.long),
    )


def step(epoch: int) -> StepInfo:
    return StepInfo(epoch=epoch, step=0, steps_per_epoch=1, epochs=100)


# --- projection and PCA ------------------------------------------------------------------
def test_projection_mlp_shapes():
    mlp = ProjectionMLP(D, DIM, 0.3)
    assert mlp.a.weight.shape == (D // 2, D) and mlp.b.weight.shape == (DIM, D // 2)
    assert mlp(torch.randn(3, 5, D)).shape == (3, 5, DIM)
    assert mlp.dropout.p == 0.3


def test_projection_rows_equal_the_per_slot_mlp_and_keep_per_slot_dropout():
    torch.manual_seed(0)
    mlp = ProjectionMLP(12, 4, dropout=0.3)
    text = torch.randn(9, 12)
    ids = torch.tensor([[0, 0, 3, 5, 3], [0, 7, 7, 7, 1]])
    mlp.eval()
    expected = mlp(text[ids]).masked_fill((ids == 0).unsqueeze(-1), 0.0)
    torch.testing.assert_close(mlp.rows(text, ids), expected)
    assert mlp.rows(text, ids)[0, :2].abs().sum() == 0
    mlp.train()
    out = mlp.rows(text, ids)
    assert out.shape == (2, 5, 4) and out[ids == 0].abs().sum() == 0
    assert not torch.allclose(out[1, 1], out[1, 2])  # the same item, its own dropout mask per slot
    out.sum().backward()
    assert mlp.a.weight.grad is not None and mlp.a.weight.grad.abs().sum() > 0


def test_pca_initialisation_equals_sklearn(text):
    items = FAERecItems(text, DIM)
    want = PCA(n_components=DIM, svd_solver="full").fit_transform(text[1:].double().numpy())
    got = items.ids.all().detach()
    assert torch.all(got[0] == 0)
    assert np.allclose(got[1:].numpy(), want, atol=1e-5)
    off = FAERecItems(text, DIM, FAERecItemsConfig(pca_init=False))
    assert not np.allclose(off.ids.all().detach()[1:].numpy(), want, atol=1e-2)


# --- the gate ----------------------------------------------------------------------------
def test_gate_starts_with_zero_bias_and_matches_the_formula(text):
    torch.manual_seed(0)
    items = FAERecItems(text, DIM, max_len=5)
    fus = items.fusion
    assert torch.all(fus.w2.bias == 0)
    assert fus.w1.weight.shape == (2 * DIM, 2 * DIM) and fus.w2.weight.shape == (DIM, 2 * DIM)
    with torch.no_grad():  # make the affine of the LayerNorm non-trivial
        fus.norm.weight.uniform_(0.5, 1.5)
        fus.norm.bias.uniform_(-0.5, 0.5)
    items.eval()
    ids = torch.tensor([[0, 3, 7], [1, 2, 2]])
    with torch.no_grad():
        h = items.history(ids)
        pos = fus.position.weight[2:5]
        E = items.ids.embedding.weight
        mlp = items.mlp
        for b in range(2):
            for t in range(3):
                i = int(ids[b, t])
                if i == 0:
                    assert torch.all(h[b, t] == 0)
                    continue
                u = E[i] + pos[t]
                v = mlp.b(F.gelu(mlp.a(text[i]))) + pos[t]
                g = torch.sigmoid(fus.w2.weight @ F.gelu(fus.w1.weight @ torch.cat([u, v]) + fus.w1.bias) + fus.w2.bias)
                x = g * u + (1 - g) * v
                want = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5) * fus.norm.weight + fus.norm.bias
                assert torch.allclose(h[b, t], want, atol=1e-5)


# --- two sides -----------------------------------------------------------------------------
def test_two_sides_and_serving(prepared, text):
    m = build(prepared)
    items = m.items
    assert items.two_sided and items.fusion.position is not None  # SASRec: P in the fusion (auto)
    m.train()
    assert torch.equal(items.all(), items.ids.all())
    m.eval()
    h = torch.as_tensor(prepared.split.test.histories[:6])
    with torch.no_grad():
        llm = items.mlp(text)
        want = F.layer_norm(items.ids.all() + llm, (DIM,))
        assert torch.allclose(items.all()[1:], want[1:], atol=1e-5)
        scores = m.score_all(h)
        served = m.for_serving()
        frozen = served.expert.items
        assert torch.allclose(frozen.table, items.all(), atol=1e-6)
        assert torch.allclose(frozen.id_table, items.ids.all()) and torch.allclose(frozen.llm_table[1:], llm[1:])
        assert torch.allclose(served.score_all(h), scores, atol=1e-5)
        tables = served.item_embeddings()
        assert set(tables) == {"id", "llm", "candidate"}
    assert set(m.item_embeddings()) == {"id", "llm", "candidate"}


def test_registered_representation_in_the_sequential_method(prepared):
    assert ITEM_REPRESENTATIONS.get("faerec_gated").two_sided
    ctx = MethodContext(prepared.dataset.num_items, 10, prepared.stats, prepared.text_embeddings)
    m = METHODS.build("sequential", {"items": "faerec_gated", "hidden_size": DIM, "loss": "bce"}, context=ctx)
    h = torch.as_tensor(prepared.split.test.histories[:4])
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m.for_serving().score_all(h), m.score_all(h), atol=1e-5)
    items = build_items("faerec_gated", {}, ItemContext(prepared.dataset.num_items, DIM, prepared.text_embeddings))
    assert items.fusion.position is None


# --- losses --------------------------------------------------------------------------------
def test_item_info_nce_against_a_naive_loop():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    ids = torch.tensor([3, 5, 3, 1, 5, 5, 2])
    tau = 0.05
    total = 0.0
    for n in range(7):
        s = [float(F.cosine_similarity(a[n], b[m], dim=0)) / tau for m in range(7)]
        keep = [m for m in range(7) if m == n or ids[m] != ids[n]]
        total += -(s[n] - math.log(sum(math.exp(s[m]) for m in keep)))
    assert float(item_info_nce(a, b, ids, tau)) == pytest.approx(total / 7, rel=1e-5)
    assert float(item_info_nce(a, b, torch.arange(7), tau)) != pytest.approx(total / 7, rel=1e-3)


def test_barlow_twins_against_a_naive_formula_and_the_median_split():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    lam, eps = 0.005, 1e-5
    za = (a.numpy() - a.numpy().mean(0)) / (a.numpy().std(0, ddof=1) + eps)
    zb = (b.numpy() - b.numpy().mean(0)) / (b.numpy().std(0, ddof=1) + eps)
    c = za.T @ zb / 9
    want = sum((1 - c[i, i]) ** 2 for i in range(3)) + lam * sum(
        c[i, j] ** 2 for i in range(3) for j in range(3) if i != j
    )
    assert float(barlow_twins(a, b, lam, eps)) == pytest.approx(want, rel=1e-4)
    pop = torch.tensor([1.0, 9.0, 4.0, 4.0, 2.0, 7.0, 3.0, 8.0, 5.0])
    high = median_split(pop)
    assert high.tolist() == (pop.numpy() >= np.median(pop.numpy())).tolist()
    assert median_split(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist() == [False, False, True, True]  # median 2.5
    grouped = float(grouped_barlow_twins(a, b, pop, lam, eps))
    assert grouped == pytest.approx(float(barlow_twins(a[high], b[high]) + barlow_twins(a[~high], b[~high])))
    assert float(grouped_barlow_twins(a, b, None, lam, eps)) == pytest.approx(want, rel=1e-4)


# --- curriculum ----------------------------------------------------------------------------
def test_curriculum_weights():
    assert curriculum_weights(0, 0.9, 1.0, 30) == pytest.approx((1.0, 0.0))
    assert curriculum_weights(7.5, 0.9, 1.0, 30)[0] == pytest.approx(0.95)
    assert curriculum_weights(15, 0.9, 1.0, 30) == pytest.approx((0.9, 0.1))
    assert curriculum_weights(30, 0.3, 1.0, 25)[0] == pytest.approx(
        0.3 + 0.7 * (1 + math.cos(2 * math.pi * 30 / 25)) / 2
    )


def test_losses_follow_the_curriculum(prepared):
    m = build(prepared, w_min=0.0, period=10)
    b = batch_of(prepared)
    torch.manual_seed(0)
    at0 = m.losses(b, step(0))
    assert float(at0["align_feature"].detach()) == 0.0 and float(at0["align_item"].detach()) > 0
    torch.manual_seed(0)
    at5 = m.losses(b, step(5))
    assert float(at5["align_item"].detach()) == 0.0 and float(at5["align_feature"].detach()) > 0
    m.eval()  # no dropout: the weighted terms are α·w·L exactly
    torch.manual_seed(0)
    with torch.no_grad():
        mid = m.losses(b, step(2))  # w_I = (1 + cos(0.4π)) / 2
    ref = build(prepared, w_min=0.0, period=10, curriculum=False)
    ref.load_state_dict(m.state_dict())
    ref.eval()
    torch.manual_seed(0)  # the same negatives, so the same slots
    with torch.no_grad():
        half = ref.losses(b, step(2))
    w_item = (1 + math.cos(2 * math.pi * 2 / 10)) / 2
    assert float(mid["align_item"]) == pytest.approx(float(half["align_item"]) * w_item / 0.5, rel=1e-4)
    assert float(mid["align_feature"]) == pytest.approx(float(half["align_feature"]) * (1 - w_item) / 0.5, rel=1e-4)
    assert m.report()["curriculum"] == {
        "epoch": 2,
        "w_item": pytest.approx(w_item),
        "w_feature": pytest.approx(1 - w_item),
    }


# --- ablations ---------------------------------------------------------------------------
def test_ablation_switches(prepared):
    b = batch_of(prepared)
    full = build(prepared)
    assert set(full.losses(b, step(3))) == {"rec", "align_item", "align_feature"}
    assert set(build(prepared, item_alignment=False).losses(b, step(3))) == {"rec", "align_feature"}
    assert set(build(prepared, feature_alignment=False).losses(b, step(3))) == {"rec", "align_item"}
    assert build(prepared, curriculum=False).weights(0) == (0.5, 0.5) and full.weights(0) == (1.0, 0.0)
    no_gate = build(prepared, gating=False).eval()
    assert torch.all(no_gate.items.fusion.gate(torch.randn(2, 3, DIM), torch.randn(2, 3, DIM)) == 0.5)
    full.eval()
    assert not torch.all(full.items.fusion.gate(torch.randn(2, 3, DIM), torch.randn(2, 3, DIM)) == 0.5)
    # without grouping: one Barlow Twins over every slot
    torch.manual_seed(0)
    one = build(prepared, popularity_grouping=False).eval()
    grouped = build(prepared).eval()
    with torch.no_grad():
        torch.manual_seed(1)
        l1 = one.losses(b, step(15))["align_feature"]
        torch.manual_seed(1)
        l2 = grouped.losses(b, step(15))["align_feature"]
    assert float(l1) != pytest.approx(float(l2), rel=1e-3)
    assert build(prepared, fusion_positions="off").items.fusion.position is None
    assert build(prepared, backbone="lrurec").config.fusion_positions == "off"  # spec: no P for LRURec
    assert build(prepared, pca_init=False).config.pca_init is False


# --- end to end ----------------------------------------------------------------------------
def test_end_to_end_training(tmp_path, prepared):
    cfg = load_experiment_config(
        {
            "name": "t",
            "output_dir": str(tmp_path / "run"),
            "method": "faerec",
            "method_config": {"hidden_size": 16, "backbone_config": {"dropout": 0.1}, "w_min": 0.5, "period": 4},
            "split": {"max_len": 10},
            "stats": {"num_buckets": 4},
            "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "progress": False, "monitor": "NDCG@5"},
            "eval": {"ks": [5]},
        }
    )
    res = run_experiment(cfg, prepared)
    hist = res["phases"][0]["history"]
    assert len(hist) == 3
    for row in hist:
        for key in ("loss_rec", "loss_align_item", "loss_align_feature"):
            assert math.isfinite(row[key])
    assert hist[-1]["loss_rec"] < hist[0]["loss_rec"]
    run = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "model.json", "results.json", "serving.safetensors"):
        assert (run / name).exists(), name
    results = json.loads((run / "results.json").read_text())
    assert "curriculum" in results["method_report"]
    assert json.loads((run / "config.json").read_text())["method_config"]["fusion_positions"] == "on"
    assert res["test"]["overall"]["NDCG@5"] > 0.1

    from padrec.serving import Recommender

    rec = Recommender.load(run)
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_builds_inside_faerec(prepared, backbone):
    m = build(prepared, backbone=backbone)
    m.train()
    losses = m.losses(batch_of(prepared, 8), step(1))
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert m.items.fusion.w1.weight.grad is not None and m.items.mlp.a.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        assert m.score_all(torch.as_tensor(prepared.split.test.histories[:3])).shape == (
            3,
            prepared.dataset.num_items + 1,
        )
