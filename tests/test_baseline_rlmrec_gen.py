"""RLMRec-Gen: the reconstruction term against the official formula, the catalogue masking,
the masked forward, every backbone, end-to-end training, determinism and serving."""

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

from padrec.config import ConfigError
from padrec.losses.ranking import bce_loss, sample_negatives
from padrec.losses.rlmrec import generative_alignment

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def prepared(toy_dataset):
    return toy_prepared(toy_dataset)


def naive_gen(x: torch.Tensor, s: torch.Tensor, ids: list[int], tau: float) -> float:
    """Official ``ssl_con_loss(x, s, τ)`` = mean_i −log(exp(cos(x_i, s_i)/τ) / Σ_j exp(cos(x_i, s_j)/τ)),
    with the other rows of row i's own item left out of its denominator, as loops."""
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        sims = [float(F.cosine_similarity(x[i], s[j], dim=0)) / tau for j in range(n)]
        keep = [j for j in range(n) if j == i or ids[j] != ids[i]]
        total += -math.log(math.exp(sims[i]) / sum(math.exp(sims[j]) for j in keep))
    return total / n


def test_generative_alignment_matches_the_official_formula():
    g = torch.Generator().manual_seed(2)
    x, s = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    distinct = list(range(7))
    assert float(generative_alignment(x, s, None, 0.5)) == pytest.approx(naive_gen(x, s, distinct, 0.5), rel=1e-5)
    repeated = [3, 5, 3, 1, 5, 5, 2]
    got = float(generative_alignment(x, s, torch.tensor(repeated), 0.5))
    assert got == pytest.approx(naive_gen(x, s, repeated, 0.5), rel=1e-5)
    assert got != pytest.approx(naive_gen(x, s, distinct, 0.5), rel=1e-3)
    # the official ssl_con_loss adds 1e-8 twice; on distinct rows it is the same number
    xn, sn = F.normalize(x), F.normalize(s)
    official = -torch.log(torch.exp((xn * sn).sum(1) / 0.5) / (torch.exp(xn @ sn.T / 0.5).sum(1) + 1e-8) + 1e-8)
    assert float(generative_alignment(x, s, None, 0.5)) == pytest.approx(float(official.mean()), rel=1e-5)


def test_masking_draws_a_share_of_the_catalogue(prepared):
    m = build("rlmrec_gen", prepared)
    head = m.align
    n = prepared.dataset.num_items
    assert torch.all(head.mask_token == 0) and head.mask_token.shape == (1, DIM)
    assert head.up.net[0].weight.shape == ((DIM + TEXT_DIM) // 2, DIM)
    assert head.up.net[2].weight.shape == (TEXT_DIM, (DIM + TEXT_DIM) // 2)
    inputs = torch.arange(0, n + 1).repeat(2, 1)  # every id once per row, 0 included
    torch.manual_seed(0)
    masked = head.masked_slots(inputs, n)
    k = max(int(n * 0.15), 1)
    assert int(masked[0].sum()) == k and torch.equal(masked[0], masked[1])
    assert not masked[:, 0].any()  # padding is never masked
    torch.manual_seed(0)
    drawn = torch.randperm(n)[:k] + 1
    assert set(inputs[0][masked[0]].tolist()) == set(drawn.tolist())
    tiny = build("rlmrec_gen", prepared, mask_ratio=1e-3)
    assert int(tiny.align.masked_slots(inputs, n)[0].sum()) == 1  # at least one, as NodeMask


def test_losses_use_the_masked_histories(prepared):
    m = build("rlmrec_gen", prepared, mask_ratio=0.3).eval()  # no dropout
    with torch.no_grad():
        m.align.mask_token.normal_()
    b = batch_of(prepared, 6)
    n = prepared.dataset.num_items
    torch.manual_seed(5)
    with torch.no_grad():
        out = m.losses(b)
        torch.manual_seed(5)
        drawn = torch.randperm(n)[: int(n * 0.3)] + 1
        masked = torch.isin(b.inputs, drawn)
        x = m.expert.items.history(b.inputs).clone()
        x[masked] = m.align.mask_token[0]
        h = m.expert.backbone(x, b.inputs == 0)
        neg = sample_negatives(b.inputs, b.targets, n, 1)
        E = m.expert.items.all()
        pos = (h * E[b.targets]).sum(-1)
        neg_logits = (h.unsqueeze(2) * E[neg]).sum(-1)
        rec = bce_loss(pos, neg_logits, b.targets > 0)
        ids = b.inputs[masked]
        recon = m.align(h[masked])
        want = 0.1 * naive_gen(recon, prepared.text_embeddings[ids], ids.tolist(), 0.5)
    assert masked.any()
    assert float(out["rec"]) == pytest.approx(float(rec), rel=1e-5)
    assert float(out["align"]) == pytest.approx(want, rel=1e-4)
    # the same histories unmasked give another next-item loss
    torch.manual_seed(5)
    with torch.no_grad():
        plain = m.rec_loss(m.expert.encode(b.inputs), b)[0]
    assert float(plain) != pytest.approx(float(rec), rel=1e-4)


def test_defaults_and_checks(prepared):
    cfg = build("rlmrec_gen", prepared).config
    assert (cfg.mask_ratio, cfg.weight, cfg.temperature, cfg.loss) == (0.15, 0.1, 0.5, "bce")
    for bad in ({"mask_ratio": 0.0}, {"mask_ratio": 1.5}, {"temperature": -1.0}):
        with pytest.raises((ConfigError, ValueError)):
            build("rlmrec_gen", prepared, **bad)
    off = build("rlmrec_gen", prepared, weight=0.0)
    out = off.losses(batch_of(prepared))
    assert float(out["align"].detach()) == 0.0
    sum(out.values()).backward()  # the head stays in the graph (data-parallel needs it)
    assert off.align.up.net[0].weight.grad is not None


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "fmlprec"])
def test_builds_and_trains_on_backbones(prepared, backbone):
    m = build("rlmrec_gen", prepared, backbone=backbone, mask_ratio=0.3)
    m.train()
    total = sum(m.losses(batch_of(prepared, 8)).values())
    assert torch.isfinite(total)
    total.backward()
    assert m.expert.items.embedding.weight.grad.abs().sum() > 0
    assert m.align.up.net[0].weight.grad.abs().sum() > 0 and m.align.mask_token.grad.abs().sum() > 0
    served = assert_serving_matches(m, prepared, 3)
    assert served.align is None and served.new_items_unsupported() is not None


def test_end_to_end_beats_random_is_deterministic_and_serves(tmp_path, prepared):
    res = run_toy("rlmrec_gen", prepared, tmp_path / "a")
    hist = loss_history(res)
    assert all(math.isfinite(v) for row in hist for v in row.values())
    assert {"loss_rec", "loss_align"} <= set(hist[0])
    assert res["test"]["overall"]["NDCG@5"] > 0.05  # random: about 5/40 hits spread over ranks
    again = run_toy("rlmrec_gen", prepared, tmp_path / "b")
    assert loss_history(again) == hist
    assert again["test"]["overall"] == res["test"]["overall"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "a")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5
