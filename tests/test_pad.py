"""PAD: phases, weight hand-over, trainable sets, alignment variants, gates, serving export."""

from __future__ import annotations

import pytest
import torch

from padrec.data import compute_item_stats, make_split
from padrec.evaluation import EvalConfig
from padrec.methods import METHODS, MethodContext, TrainBatch
from padrec.models.gating import BucketScalarGate
from padrec.training.trainer import TrainConfig, Trainer


@pytest.fixture
def setup(toy_dataset):
    split = make_split(toy_dataset)
    stats = compute_item_stats(toy_dataset, num_buckets=4)
    g = torch.Generator().manual_seed(0)
    text = torch.randn(toy_dataset.num_items + 1, 24, generator=g)
    text[0] = 0
    ctx = MethodContext(toy_dataset.num_items, split.config.max_len, stats, text)
    batch = TrainBatch(
        torch.from_numpy(split.train_inputs[:16]),
        torch.from_numpy(split.train_targets[:16]),
        torch.zeros(16, dtype=torch.long),
    )
    return split, ctx, batch


def pad(ctx, **cfg):
    torch.manual_seed(0)
    return METHODS.build("pad", {"hidden_size": 16, **cfg}, context=ctx)


def test_phases_and_ablations(setup):
    _, ctx, _ = setup
    assert [p.name for p in pad(ctx).phases()] == ["pretrain", "pretrain_llm", "align", "disentangle"]
    assert [p.name for p in pad(ctx, experts=["id", "llm"]).phases()] == ["pretrain", "pretrain_llm", "disentangle"]
    release = pad(ctx, llm_pretrain=False, frozen_in_phase3=[])
    assert [p.name for p in release.phases()] == ["pretrain", "align", "disentangle"]
    # Gate-only phase 3 (every expert frozen) runs at the gate's learning rate.
    assert pad(ctx).phases()[-1].overrides["lr"] > release.phases()[-1].overrides["lr"]
    with pytest.raises(Exception, match="experts"):
        pad(ctx, experts=["id", "bogus"])


def test_align_phase_starts_from_the_pretrained_id_expert(setup):
    _, ctx, _ = setup
    m = pad(ctx)
    with torch.no_grad():
        m.id_expert.items.embedding.weight.add_(1.0)
    m.begin_phase("align")
    assert torch.equal(m.align_expert.items.first.all(), m.id_expert.items.all())
    for a, b in zip(m.align_expert.backbone.parameters(), m.id_expert.backbone.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "caser"])
def test_passthrough_fusion_starts_as_the_id_expert(setup, backbone):
    """With ``fusion_init: passthrough`` (and no activation) the alignment expert's first
    scores equal the phase-1 ID expert's, whatever the backbone."""
    _, ctx, batch = setup
    m = pad(ctx, backbone=backbone, fusion_init="passthrough", fusion_activation="identity")
    with torch.no_grad():
        m.id_expert.items.embedding.weight.mul_(10.0)
    m.begin_phase("align")
    m.eval()
    with torch.no_grad():
        h_id, h_al = m.id_expert.encode(batch.inputs), m.align_expert.encode(batch.inputs)
        torch.testing.assert_close(h_al, h_id)
        torch.testing.assert_close(m.align_expert.items.all(), m.id_expert.items.all())
    assert pad(ctx).align_expert.items.linear.weight[:, 16:].abs().sum() > 0  # release init: random


def test_fusion_init_auto_follows_the_backbone(setup):
    """``auto`` keeps the release's random fusion on backbones with a bounded output and
    starts from the ID vectors on Caser; the resolved value is what the config records."""
    _, ctx, _ = setup
    for backbone, expected in (("sasrec", "xavier_normal"), ("gru4rec", "xavier_normal"), ("caser", "passthrough")):
        m = pad(ctx, backbone=backbone)
        assert m.config.fusion_init == expected
        text_weights = m.align_expert.items.linear.weight[:, 16:]
        assert (text_weights.abs().sum() == 0) == (expected == "passthrough")
    assert pad(ctx, backbone="caser", fusion_init="xavier_normal").config.fusion_init == "xavier_normal"


def test_each_phase_trains_its_own_parameters(setup):
    _, ctx, batch = setup
    m = pad(ctx, frozen_in_phase3=[])
    for phase, owner in (("pretrain", m.id_expert), ("align", m.align_expert), ("pretrain_llm", m.llm_expert)):
        m.begin_phase(phase)
        ids = {id(p) for p in m.trainable_parameters()}
        assert ids == {id(p) for p in owner.parameters()}
        m.zero_grad()
        sum(m.losses(batch).values()).backward()
        others = [e for e in (m.id_expert, m.align_expert, m.llm_expert) if e is not owner]
        assert all(p.grad is None for e in others for p in e.parameters())
    m.begin_phase("disentangle")
    ids = {id(p) for p in m.trainable_parameters()}
    assert {id(p) for p in m.gate.parameters()} <= ids and {id(p) for p in m.llm_expert.parameters()} <= ids


def test_alignment_variants(setup):
    _, ctx, batch = setup
    m = pad(ctx, anchoring="non_anchored")
    m.begin_phase("align")
    assert set(m.losses(batch)) == {"align"}
    m = pad(ctx)
    m.begin_phase("align")
    assert set(m.losses(batch)) == {"rec", "align"}
    m = pad(ctx, alignment="none")
    m.begin_phase("align")
    assert set(m.losses(batch)) == {"rec"}
    # Frozen ID side: the alignment term sends no gradient to the ID table.
    m = pad(ctx, anchoring="anchored_frozen_id")
    m.begin_phase("align")
    m.zero_grad()
    m._alignment_term(batch, None).backward()
    assert m.align_expert.items.first.embedding.weight.grad is None
    assert m.align_expert.items.second.parameters().__next__().grad is not None
    m = pad(ctx)
    m.begin_phase("align")
    m.zero_grad()
    m._alignment_term(batch, None).backward()
    assert m.align_expert.items.first.embedding.weight.grad.abs().sum() > 0


def test_release_gate_initialisation(setup):
    _, ctx, _ = setup
    m = pad(ctx)
    assert isinstance(m.gate, BucketScalarGate)
    report = m.report()
    assert report["experts"] == ["id", "align", "llm"] and len(report["gate_per_bucket"]) == 4
    s = torch.sigmoid(torch.tensor([1.0, -4.0, 0.0]))
    table = m.gate_table()
    assert torch.allclose(table[0], s / s.sum(), atol=1e-6)
    s = torch.sigmoid(torch.tensor([0.0, -5.0, 1.0]))
    assert torch.allclose(table[-1], s / s.sum(), atol=1e-6)


@pytest.mark.parametrize("gate", ["bucket_scalar", "network", "learned", "none"])
def test_disentangle_scores_are_the_gated_sum(setup, gate):
    split, ctx, batch = setup
    m = pad(ctx, gate=gate).eval()
    m.begin_phase("disentangle")
    h = torch.from_numpy(split.test.histories[:5])
    with torch.no_grad():
        got = m.score_all(h)
        experts = [m.id_expert, m.align_expert, m.llm_expert]
        tables = [e.items.all() for e in experts]
        w = m.gate.weights(torch.arange(ctx.num_items + 1), tables)
        assert torch.allclose(w.sum(-1), torch.ones(ctx.num_items + 1), atol=1e-5)
        want = sum(w[:, i] * (e.sequence_vector(h) @ t.t()) for i, (e, t) in enumerate(zip(experts, tables)))
    assert torch.allclose(got, want, atol=1e-5)
    m.train()
    assert set(m.losses(batch)) == {"rec"}


RELEASE_PHASE3 = {
    "llm_pretrain": False,
    "frozen_in_phase3": [],
    "text_mlp_layers": 4,
    "text_final_activation": True,
    "text_input_norm": "none",
}


@pytest.mark.parametrize("loss,extra", [("ce", {}), ("bce", {}), ("ce", RELEASE_PHASE3), ("bce", RELEASE_PHASE3)])
def test_all_phases_train_and_serving_export_matches(setup, tmp_path, loss, extra):
    from padrec.training.checkpoint import load_weights, save_weights

    split, ctx, _ = setup
    m = pad(ctx, loss=loss, **extra)
    untrained = Trainer(m, split, TrainConfig(progress=False), EvalConfig(ks=[10])).validate(split.valid).main()
    for phase in m.phases():
        m.begin_phase(phase.name)
        trained = {id(p) for p in m.trainable_parameters()}
        before = {n: p.detach().clone() for n, p in m.named_parameters() if id(p) not in trained}
        cfg = TrainConfig(epochs=2, batch_size=32, lr=5e-3, progress=False)
        res = Trainer(m, split, cfg, EvalConfig(ks=[10])).fit(phase.name, tmp_path / phase.name, "fp")
        # only the phase's own modules move; the experts' own phases learn the toy chains
        for n, p in m.named_parameters():
            if n in before:
                assert torch.equal(p, before[n]), f"{phase.name} changed {n}"
        if phase.name in ("pretrain", "align"):
            assert res.best_value > untrained + 0.03, (phase.name, res.best_value, untrained)
    m.eval()
    h = torch.from_numpy(split.test.histories[:6])
    with torch.no_grad():
        want = m.score_all(h)
        served = m.for_serving()
        assert torch.allclose(served.score_all(h), want, atol=1e-5)
        parts = served.score_parts(h)
        assert set(parts) == set(served.config.experts)
        assert torch.allclose(sum(parts.values()), want, atol=1e-5)
    save_weights(served, tmp_path / "serving.safetensors")
    clone = pad(ctx, loss=loss, **extra)
    clone.set_phase("disentangle")
    clone = clone.for_serving(copy_model=False)
    load_weights(clone, tmp_path / "serving.safetensors")
    with torch.no_grad():
        assert torch.allclose(clone.score_all(h), want, atol=1e-5)


def test_frozen_experts_keep_their_weights_in_phase3(setup):
    _, ctx, batch = setup
    m = pad(ctx, frozen_in_phase3=["id", "align"])
    m.begin_phase("disentangle")
    ids = {id(p) for p in m.trainable_parameters()}
    assert not ids & {id(p) for p in m.id_expert.parameters()}
    assert not ids & {id(p) for p in m.align_expert.parameters()}
    assert {id(p) for p in m.llm_expert.parameters()} <= ids
    m.train()
    assert not m.id_expert.training and not m.align_expert.training and m.llm_expert.training
    m.zero_grad()
    sum(m.losses(batch).values()).backward()
    assert all(p.grad is None for p in m.id_expert.parameters())
    assert all(p.grad is None for p in m.align_expert.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.llm_expert.parameters())
    m.begin_phase("pretrain")
    m.train()
    assert m.id_expert.training
    with pytest.raises(Exception, match="cannot be"):
        pad(ctx, llm_pretrain=False, frozen_in_phase3=["llm"])
    # The default freezes every expert (gate-only phase 3); ablations freeze the ones they keep.
    assert pad(ctx).config.frozen_in_phase3 == ["id", "align", "llm"]
    assert pad(ctx, experts=["id", "llm"]).config.frozen_in_phase3 == ["id", "llm"]
    m = pad(ctx)
    m.begin_phase("disentangle")
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.gate.parameters()}


def test_phase3_logit_adjustment_changes_the_loss_not_the_scores(setup):
    split, ctx, batch = setup
    plain, adjusted = pad(ctx), pad(ctx, logit_adjustment=1.0)
    for m in (plain, adjusted):
        m.begin_phase("disentangle")
        m.eval()
    h = torch.from_numpy(split.test.histories[:4])
    with torch.no_grad():
        assert torch.equal(plain.score_all(h), adjusted.score_all(h))
        assert not torch.allclose(plain.losses(batch)["rec"], adjusted.losses(batch)["rec"])
    with pytest.raises(Exception, match=">= 0"):
        pad(ctx, logit_adjustment=-0.5)


def test_options_added_later_do_not_invalidate_finished_phases(setup):
    """At their old-behaviour values the fusion options stay out of the align and disentangle
    fingerprints (finished runs from before they existed are reused); other values enter."""
    _, ctx, _ = setup
    m = pad(ctx)
    phases = {p.name: p for p in m.phases()}
    release = m.fingerprint_config(phases["align"])
    assert "fusion_init" not in release and "fusion_activation" not in release and "alignment" in release
    assert "fusion_init" not in m.fingerprint_config(phases["disentangle"])
    changed_m = pad(ctx, fusion_init="passthrough")
    changed = changed_m.fingerprint_config(changed_m.phase_named("align"))
    assert changed["fusion_init"] == "passthrough"
    assert {k: v for k, v in changed.items() if k != "fusion_init"} == release


def test_phase_fingerprints_read_the_fields_their_phases_depend_on(setup):
    """The field metadata decides what each phase's fingerprint reads: the ID pre-training
    ignores text, alignment and gate settings; the LLM phase ignores alignment and gate ones."""
    _, ctx, _ = setup
    m = pad(ctx)
    keys = {p.name: set(m.fingerprint_config(p)) for p in m.phases()}
    assert keys["pretrain"] == {"backbone", "backbone_config", "hidden_size", "init_std", "loss", "num_negatives"}
    assert "text_mlp_layers" in keys["pretrain_llm"] and "gamma" not in keys["pretrain_llm"]
    assert "llm_logit_adjustment" in keys["pretrain_llm"] and "gate" not in keys["pretrain_llm"]
    assert {"gamma", "alignment", "text_input_norm"} <= keys["align"] and "gate" not in keys["align"]
    assert {"gate", "gate_init", "experts", "gamma", "llm_logit_adjustment"} <= keys["disentangle"]
