"""RLMRec-Con: the contrastive term against the official formula, σ↓'s shape, which items it
aligns, its weight, every backbone, end-to-end training, determinism and serving."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers_llminit_rlmrec import (
    DIM,
    TEXT_DIM,
    assert_serving_matches,
    batch_of,
    build,
    loss_history,
    run_toy,
    toy_prepared,
)
from torch import nn

from padrec.config import ConfigError
from padrec.losses.ranking import sample_negatives
from padrec.losses.rlmrec import contrastive_alignment
from padrec.methods.rlmrec import RLMRecMLP

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def prepared(toy_dataset):
    return toy_prepared(toy_dataset)


def naive_con(e: torch.Tensor, y: torch.Tensor, tau: float) -> float:
    """Official ``cal_infonce_loss(e, y, y, τ) / n``:
    mean_i [−cos(e_i, y_i)/τ + log Σ_j exp(cos(e_i, y_j)/τ)], written as loops."""
    n = e.shape[0]
    total = 0.0
    for i in range(n):
        sims = [float(F.cosine_similarity(e[i], y[j], dim=0)) / tau for j in range(n)]
        total += -sims[i] + math.log(sum(math.exp(s) for s in sims))
    return total / n


def test_contrastive_alignment_matches_the_official_formula():
    g = torch.Generator().manual_seed(1)
    e, y = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert float(contrastive_alignment(e, y, 0.2)) == pytest.approx(naive_con(e, y, 0.2), rel=1e-5)
    assert float(contrastive_alignment(e, y, 1.0)) == pytest.approx(naive_con(e, y, 1.0), rel=1e-5)
    # anchored at the ID rows: swapping the views changes the value
    assert float(contrastive_alignment(y, e, 0.2)) != pytest.approx(naive_con(e, y, 0.2), rel=1e-3)
    assert float(contrastive_alignment(e[:0], y[:0])) == 0.0


def test_mlp_is_the_official_down_projection():
    torch.manual_seed(0)
    mlp = RLMRecMLP(TEXT_DIM, DIM)
    first, act, last = mlp.net
    hidden = (TEXT_DIM + DIM) // 2
    assert first.weight.shape == (hidden, TEXT_DIM) and last.weight.shape == (DIM, hidden)
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.01
    bound = math.sqrt(6 / (TEXT_DIM + hidden))  # Xavier-uniform
    assert float(first.weight.detach().abs().max()) <= bound
    x = torch.randn(3, TEXT_DIM)
    torch.testing.assert_close(mlp(x), last(F.leaky_relu(first(x), 0.01)))


def test_aligned_items_are_the_distinct_items_of_the_batch(prepared):
    m = build("rlmrec_con", prepared)
    b = batch_of(prepared, 8)
    neg = sample_negatives(b.inputs, b.targets, prepared.dataset.num_items, 2)
    ids = m.alignment_items(b, neg)
    want = (
        set(b.inputs.flatten().tolist())
        | set(b.targets.flatten().tolist())
        | set(neg[b.targets > 0].flatten().tolist())
    )
    want.discard(0)
    assert sorted(ids.tolist()) == sorted(want) and ids.numel() == len(set(ids.tolist()))


def test_losses_are_rec_plus_weighted_term(prepared):
    m = build("rlmrec_con", prepared, weight=0.5).eval()  # no dropout
    b = batch_of(prepared, 6)
    torch.manual_seed(4)
    with torch.no_grad():
        out = m.losses(b)
        torch.manual_seed(4)
        neg = sample_negatives(b.inputs, b.targets, prepared.dataset.num_items, 1)
        ids = m.alignment_items(b, neg)
        e = m.expert.items.all()[ids].detach()
        y = m.align(prepared.text_embeddings[ids])
    assert set(out) == {"rec", "align"}
    assert float(out["align"]) == pytest.approx(0.5 * naive_con(e, y, 0.2), rel=1e-4)
    ref = build("sequential", prepared, loss="bce")
    ref.load_state_dict(m.state_dict(), strict=False)  # same E and backbone, no head
    ref.eval()
    torch.manual_seed(4)
    with torch.no_grad():
        assert float(ref.losses(b)["rec"]) == pytest.approx(float(out["rec"]), rel=1e-5)


def test_defaults_switches_and_checks(prepared):
    m = build("rlmrec_con", prepared)
    cfg = m.config
    assert (cfg.weight, cfg.temperature, cfg.loss, cfg.num_negatives) == (0.01, 0.2, "bce", 1)
    off = build("rlmrec_con", prepared, weight=0.0)
    assert set(off.losses(batch_of(prepared))) == {"rec"}
    assert off.phases()[0].trains == ["expert"] and m.phases()[0].trains == ["expert", "align"]
    ce = build("rlmrec_con", prepared, loss="ce")
    assert set(ce.losses(batch_of(prepared))) == {"rec", "align"}
    capped = build("rlmrec_con", prepared, align_max_rows=5)
    assert capped.subsample(torch.arange(40)).numel() == 5
    for bad in ({"temperature": 0.0}, {"weight": -1.0}, {"align_max_rows": -1}):
        with pytest.raises((ConfigError, ValueError)):
            build("rlmrec_con", prepared, **bad)
    with pytest.raises(ValueError, match="text embeddings"):
        from padrec.methods import METHODS, MethodContext

        METHODS.build("rlmrec_con", {}, context=MethodContext(prepared.dataset.num_items, 10))


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "fmlprec"])
def test_builds_and_trains_on_backbones(prepared, backbone):
    m = build("rlmrec_con", prepared, backbone=backbone)
    m.train()
    total = sum(m.losses(batch_of(prepared, 8)).values())
    assert torch.isfinite(total)
    total.backward()
    assert m.expert.items.embedding.weight.grad.abs().sum() > 0
    assert m.align.net[0].weight.grad.abs().sum() > 0
    served = assert_serving_matches(m, prepared, 3)
    assert served.align is None and served.new_items_unsupported() is not None
    assert set(m.item_embeddings()) == {"id", "llm"} and set(served.item_embeddings()) == {"id"}


def test_end_to_end_beats_random_is_deterministic_and_serves(tmp_path, prepared):
    res = run_toy("rlmrec_con", prepared, tmp_path / "a", weight=0.1)
    hist = loss_history(res)
    assert all(math.isfinite(v) for row in hist for v in row.values())
    assert {"loss_rec", "loss_align"} <= set(hist[0])
    assert res["test"]["overall"]["NDCG@5"] > 0.05  # random: about 5/40 hits spread over ranks
    again = run_toy("rlmrec_con", prepared, tmp_path / "b", weight=0.1)
    assert loss_history(again) == hist
    assert again["test"]["overall"] == res["test"]["overall"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "a")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5
