"""CTRL: the two-direction InfoNCE against its formula, the two phases and what each trains,
every granularity, two backbones, end-to-end training, determinism and the ID-only serving form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pad_baseline_helpers import (
    assert_config_valid,
    assert_serving_matches,
    batch_of,
    build,
    losses_of,
    run_toy,
    toy_prepared,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def prepared(toy_dataset):
    return toy_prepared(toy_dataset)


def naive_ctrl_loss(text: torch.Tensor, ids: torch.Tensor, tau: float) -> float:
    """½ (L_text→ID + L_ID→text) with s_ij = cos(text_i, id_j) / τ, by loops."""
    n = text.shape[0]
    s = [[float(F.cosine_similarity(text[i], ids[j], dim=0)) / tau for j in range(n)] for i in range(n)]
    t2c = sum(-(s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(n)))) for i in range(n)) / n
    c2t = sum(-(s[j][j] - math.log(sum(math.exp(s[i][j]) for i in range(n)))) for j in range(n)) / n
    return 0.5 * (t2c + c2t)


def test_contrastive_loss_is_ctrls_two_direction_infonce(prepared):
    m = build("ctrl", prepared, temperature=0.2, projection_dim=5)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(7, 8, generator=g), torch.randn(7, 8, generator=g)
    with torch.no_grad():
        got = float(m.contrastive(a, b))
        want = naive_ctrl_loss(m.heads["text"](b), m.heads["id"](a), 0.2)
    assert got == pytest.approx(want, rel=1e-5)
    assert m.heads["id"].out_features == 5 and m.heads["text"].in_features == 8


def test_align_losses_per_granularity_and_their_samples(prepared):
    b = batch_of(prepared)
    for granularity, keys in [("sequence", {"align_sequence"}), ("item", {"align_item"})]:
        m = build("ctrl", prepared, granularity=granularity)
        m.begin_phase("align")
        m.eval()  # no dropout: the loss is a function of the weights
        with torch.no_grad():
            out = m.losses(b)
            assert set(out) == keys
            if granularity == "sequence":  # one sample per position with a target
                valid = b.targets > 0
                a, t = m.expert.encode(b.inputs)[valid], m.semantic.encode(b.inputs)[valid]
            else:  # one per distinct history item
                ids = torch.unique(b.inputs[b.inputs > 0])
                a, t = m.expert.items(ids), m.semantic.items(ids)
            want = naive_ctrl_loss(m.heads["text"](t), m.heads["id"](a), m.config.temperature)
        assert float(next(iter(out.values()))) == pytest.approx(want, rel=1e-4)
    both = build("ctrl", prepared, granularity="both")
    both.begin_phase("align")
    assert set(both.losses(b)) == {"align_sequence", "align_item"}


def test_phases_train_their_own_modules(prepared):
    m = build("ctrl", prepared, align_epochs=4)
    align, finetune = m.phases()
    assert [align.name, finetune.name] == ["align", "finetune"]
    assert align.overrides == {"epochs": 4, "validate_from": 4}  # a fixed budget, the last weights kept
    m.begin_phase("align")
    aligned = {id(p) for p in m.trainable_parameters()}
    for sub in (m.expert, m.semantic, m.heads):
        assert {id(p) for p in sub.parameters()} <= aligned
    m.begin_phase("finetune")
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.expert.parameters()}
    m.train()
    m.zero_grad()
    out = m.losses(batch_of(prepared))
    assert set(out) == {"rec"}
    out["rec"].backward()
    assert all(p.grad is None for p in m.semantic.parameters())  # text is not used in fine-tuning
    # fingerprints: alignment settings are read by the alignment phase only
    assert "temperature" in m.fingerprint_config(align) and "temperature" not in m.fingerprint_config(finetune)
    assert "loss" not in m.fingerprint_config(align) and "loss" in m.fingerprint_config(finetune)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "caser"])
def test_builds_and_trains_on_backbones(prepared, backbone):
    m = build("ctrl", prepared, backbone=backbone, granularity="both")
    b = batch_of(prepared, 8)
    for phase in ("align", "finetune"):
        m.begin_phase(phase)
        m.train()
        total = sum(m.losses(b).values())
        assert torch.isfinite(total)
        total.backward()
    assert m.expert.items.embedding.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        h = torch.as_tensor(prepared.split.test.histories[:3])
        assert m.score_all(h).shape == (3, prepared.dataset.num_items + 1)


def test_end_to_end_training_determinism_and_serving(prepared, tmp_path):
    res = run_toy("ctrl", prepared, tmp_path / "a", align_epochs=2)
    assert [p["phase"] for p in res["phases"]] == ["align", "finetune"]
    align = res["phases"][0]["history"]
    assert len(align) == 2 and "valid_NDCG@5" not in align[0]  # validated at its end only
    losses = losses_of(res)
    assert all(math.isfinite(v) for vs in losses.values() for v in vs)
    assert losses["align/loss_align_sequence"][-1] < losses["align/loss_align_sequence"][0]
    assert losses["finetune/loss_rec"][-1] < losses["finetune/loss_rec"][0]
    assert res["test"]["overall"]["NDCG@5"] > 0.3  # random ranking of ~35 candidates: about 0.09
    again = run_toy("ctrl", prepared, tmp_path / "b", align_epochs=2)
    assert again["test"]["overall"] == res["test"]["overall"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "a")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5
    assert rec.method.semantic is None


def test_serving_is_the_collaborative_model_alone(prepared):
    m = build("ctrl", prepared)
    m.begin_phase("finetune")
    served = assert_serving_matches(m, prepared)
    assert served.semantic is None and served.heads is None
    assert "ID vectors" in served.new_items_unsupported()
    assert m.semantic is not None  # the original keeps its semantic model
    assert set(m.item_embeddings()) == {"id", "text"}


def test_config_checks_and_shipped_config(prepared):
    with pytest.raises(Exception, match="granularity"):
        build("ctrl", prepared, granularity="token")
    with pytest.raises(Exception, match="temperature"):
        build("ctrl", prepared, temperature=0.0)
    assert build("ctrl", prepared).config.projection_dim == 8  # None = d
    cfg = assert_config_valid("ctrl", prepared)
    assert cfg["temperature"] == 0.07 and cfg["granularity"] == "sequence"
