"""MAKE: the fused loss against its formula (softmax and BCE), the two phases and what each
trains, two backbones, end-to-end training, determinism, serving (one inner product, parts)
and new items."""

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


def fused(m):
    """A MAKE in phase ``fuse`` with non-trivial expert weights, in eval mode (no dropout)."""
    m.begin_phase("fuse")
    m.eval()
    if m.config.gate == "learned":
        with torch.no_grad():
            m.gate.logits.copy_(torch.tensor([0.3, -0.4]))
    return m


def test_fused_softmax_loss_matches_the_formula(prepared):
    m = fused(build("make", prepared))
    b = batch_of(prepared)
    with torch.no_grad():
        got = float(m.losses(b)["rec"])
        w = F.softmax(torch.tensor([0.3, -0.4]), 0)
        total, count = 0.0, 0
        h_id, h_llm = m.id_expert.encode(b.inputs), m.llm_expert.encode(b.inputs)
        t_id, t_llm = m.id_expert.items.all(), m.llm_expert.items.all()
        for i in range(b.inputs.shape[0]):
            for t in range(b.inputs.shape[1]):
                y = int(b.targets[i, t])
                if y == 0:
                    continue
                logits = [float(w[0] * h_id[i, t] @ t_id[j] + w[1] * h_llm[i, t] @ t_llm[j]) for j in range(1, 41)]
                total += -(logits[y - 1] - math.log(sum(math.exp(v) for v in logits)))
                count += 1
    assert got == pytest.approx(total / count, rel=1e-4)


def test_fused_bce_loss_matches_the_formula(prepared):
    m = fused(build("make", prepared, loss="bce"))
    b = batch_of(prepared)
    with torch.no_grad():
        torch.manual_seed(3)
        got = float(m.losses(b)["rec"])
        from padrec.losses.ranking import sample_negatives

        torch.manual_seed(3)
        neg = sample_negatives(b.inputs, b.targets, m.num_items, 1)[..., 0]
        w = F.softmax(torch.tensor([0.3, -0.4]), 0)
        h_id, h_llm = m.id_expert.encode(b.inputs), m.llm_expert.encode(b.inputs)
        t_id, t_llm = m.id_expert.items.all(), m.llm_expert.items.all()

        def logit(i, t, j):
            return float(w[0] * h_id[i, t] @ t_id[j] + w[1] * h_llm[i, t] @ t_llm[j])

        terms = [
            -math.log(torch.sigmoid(torch.tensor(logit(i, t, int(b.targets[i, t])))))
            - math.log(1 - torch.sigmoid(torch.tensor(logit(i, t, int(neg[i, t])))))
            for i in range(b.inputs.shape[0])
            for t in range(b.inputs.shape[1])
            if b.targets[i, t] > 0
        ]
    assert got == pytest.approx(sum(terms) / len(terms), rel=1e-4)


def test_phases_train_their_own_modules(prepared):
    m = build("make", prepared)
    pre, fuse = m.phases()
    assert (pre.name, fuse.name, pre.after) == ("pretrain_llm", "fuse", [])
    m.begin_phase("pretrain_llm")
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.llm_expert.parameters()}
    assert set(m.losses(batch_of(prepared))) == {"rec"}
    m.begin_phase("fuse")
    trained = {id(p) for p in m.trainable_parameters()}
    assert trained == {id(p) for sub in (m.id_expert, m.llm_expert, m.gate) for p in sub.parameters()}
    frozen = build("make", prepared, freeze_llm=True)
    frozen.begin_phase("fuse")
    frozen.train()
    assert not frozen.llm_expert.training and frozen.id_expert.training
    frozen.zero_grad()
    frozen.losses(batch_of(prepared))["rec"].backward()
    assert all(p.grad is None for p in frozen.llm_expert.parameters())
    assert frozen.gate.logits.grad is not None and frozen.id_expert.items.embedding.weight.grad is not None
    # the LLM pre-training does not depend on fusion settings
    assert "gate" not in m.fingerprint_config(pre) and "gate" in m.fingerprint_config(fuse)
    assert "text_input_norm" in m.fingerprint_config(pre)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "caser"])
@pytest.mark.parametrize("gate", ["learned", "bucket_scalar"])
def test_builds_and_trains_on_backbones_and_gates(prepared, backbone, gate):
    m = build("make", prepared, backbone=backbone, gate=gate, loss="bce")
    b = batch_of(prepared, 8)
    for phase in ("pretrain_llm", "fuse"):
        m.begin_phase(phase)
        m.train()
        total = sum(m.losses(b).values())
        assert torch.isfinite(total)
        total.backward()
    m.eval()
    with torch.no_grad():
        h = torch.as_tensor(prepared.split.test.histories[:3])
        assert m.score_all(h).shape == (3, prepared.dataset.num_items + 1)


def test_end_to_end_training_determinism_and_serving(prepared, tmp_path):
    res = run_toy("make", prepared, tmp_path / "a")
    assert [p["phase"] for p in res["phases"]] == ["pretrain_llm", "fuse"]
    losses = losses_of(res)
    assert all(math.isfinite(v) for vs in losses.values() for v in vs)
    assert losses["fuse/loss_rec"][-1] < losses["fuse/loss_rec"][0]
    assert res["test"]["overall"]["NDCG@5"] > 0.3  # random ranking of ~35 candidates: about 0.09
    again = run_toy("make", prepared, tmp_path / "b")
    assert again["test"]["overall"] == res["test"]["overall"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "a")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5


def test_serving_parts_and_new_items(prepared):
    m = fused(build("make", prepared))
    h = torch.as_tensor(prepared.split.test.histories[:4])
    served = assert_serving_matches(m, prepared)
    with torch.no_grad():
        parts = served.score_parts(h)
        assert set(parts) == {"id", "llm"}
        assert torch.allclose(sum(parts.values()), m.score_all(h), atol=1e-5)
        assert served.serving_gate.shape == (prepared.dataset.num_items + 1, 2)
    assert served.new_items_unsupported() is None
    n = prepared.dataset.num_items
    served.add_items(torch.tensor([n + 1]), torch.randn(1, prepared.text_embeddings.shape[1]))
    assert served.num_items == n + 1
    assert served.serving_gate[n + 1].tolist() == [0.0, 1.0]  # no ID vector: all weight on the text side
    with torch.no_grad():
        scores = served.score_all(h)
    assert scores.shape == (4, n + 2) and torch.isfinite(scores).all()
    assert set(m.report()) == {"experts", "gate_mean"}
    m.begin_phase("pretrain_llm")
    with torch.no_grad():
        assert torch.allclose(m.score_all(h), m.llm_expert.score_all(h))
    assert_serving_matches(m, prepared)


def test_config_checks_and_shipped_config(prepared):
    with pytest.raises(Exception, match="gate"):
        build("make", prepared, gate="nope")
    assert build("make", prepared).config.gate == "learned"
    cfg = assert_config_valid("make", prepared)
    assert cfg["gate"] == "learned" and cfg["freeze_llm"] is False
