"""SMEM: PAD's pipeline without the alignment loss. The config refuses alignment settings, the
shared expert's loss is L_REC alone (against its formula and against PAD with alignment
'none'), every phase trains on two backbones, end to end, deterministically, and serves."""

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

from padrec.config import ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def prepared(toy_dataset):
    return toy_prepared(toy_dataset)


def test_config_has_no_alignment_loss_and_checks_as_pad(prepared):
    m = build("smem", prepared)
    assert (m.config.alignment, m.config.gamma, m.config.anchoring) == ("none", 0.0, "anchored")
    for key, value in [("alignment", "mmd_gaussian"), ("gamma", 0.2), ("mmd_max_slots", 10)]:
        with pytest.raises(ConfigError, match=key):
            build("smem", prepared, **{key: value})
    with pytest.raises(Exception, match="experts"):
        build("smem", prepared, experts=["id", "nope"])
    assert m.config.fusion_init == "xavier_normal"  # PAD's auto, resolved (SASRec has bounded output)
    assert build("smem", prepared, backbone="caser").config.fusion_init == "passthrough"
    assert build("smem", prepared, experts=["id", "align"]).config.frozen_in_phase3 == ["id", "align"]


def test_shared_expert_trains_on_the_recommendation_loss_alone(prepared):
    b = batch_of(prepared)
    m = build("smem", prepared)
    assert [p.name for p in m.phases()] == ["pretrain", "pretrain_llm", "align", "disentangle"]
    m.begin_phase("align")  # the shared expert starts from the pre-trained ID expert
    assert torch.equal(m.align_expert.items.first.all(), m.id_expert.items.all())
    m.eval()
    with torch.no_grad():
        out = m.losses(b)
        assert set(out) == {"rec"}
        ex = m.align_expert
        valid = b.targets > 0
        logits = ex.encode(b.inputs)[valid] @ ex.items.all().t()
        logits[:, 0] = -math.inf
        assert float(out["rec"]) == pytest.approx(float(F.cross_entropy(logits, b.targets[valid])), rel=1e-5)
    pad = build("pad", prepared)
    pad.load_state_dict(m.state_dict())
    pad.begin_phase("align")
    pad.eval()
    with torch.no_grad():
        with_alignment = pad.losses(b)
    assert set(with_alignment) == {"rec", "align"}  # PAD adds its MK-MMD term, SMEM does not
    assert float(with_alignment["rec"]) == pytest.approx(float(out["rec"]), rel=1e-6)
    assert "alignment" not in m.fingerprint_config(m.phase_named("align"))
    assert "fusion_dropout" in m.fingerprint_config(m.phase_named("align"))


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "caser"])
def test_every_phase_trains_on_backbones(prepared, backbone):
    m = build("smem", prepared, backbone=backbone, loss="bce")
    b = batch_of(prepared, 8)
    for phase in m.phases():
        m.begin_phase(phase.name)
        m.train()
        total = sum(m.losses(b).values())
        assert torch.isfinite(total)
        if total.requires_grad:
            total.backward()
    assert m.gate.logits.grad is not None
    m.eval()
    with torch.no_grad():
        h = torch.as_tensor(prepared.split.test.histories[:3])
        assert m.score_all(h).shape == (3, prepared.dataset.num_items + 1)


def test_end_to_end_training_determinism_and_serving(prepared, tmp_path):
    res = run_toy("smem", prepared, tmp_path / "a", epochs=2)
    assert [p["phase"] for p in res["phases"]] == ["pretrain", "pretrain_llm", "align", "disentangle"]
    losses = losses_of(res)
    assert "align/loss_align" not in losses and "align/loss_rec" in losses
    assert all(math.isfinite(v) for vs in losses.values() for v in vs)
    assert losses["align/loss_rec"][-1] < losses["align/loss_rec"][0]
    assert res["test"]["overall"]["NDCG@5"] > 0.3  # random ranking of ~35 candidates: about 0.09
    again = run_toy("smem", prepared, tmp_path / "b", epochs=2)
    assert again["test"]["overall"] == res["test"]["overall"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "a")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5


def test_serving_matches_in_every_phase(prepared):
    m = build("smem", prepared)
    for phase in ("align", "disentangle"):
        m.set_phase(phase)
        served = assert_serving_matches(m, prepared)
    assert set(served.score_parts(torch.as_tensor(prepared.split.test.histories[:2]))) == {"id", "align", "llm"}
    assert served.new_items_unsupported() is None


def test_shipped_config(prepared):
    cfg = assert_config_valid("smem", prepared)
    assert cfg["gate"] == "bucket_scalar" and cfg["frozen_in_phase3"] == ["id", "align", "llm"]
    assert "alignment" not in cfg
