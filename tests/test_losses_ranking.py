"""Ranking losses and the negative sampler against direct computations."""

import math

import pytest
import torch

from padrec.losses.ranking import (
    adjusted_cross_entropy,
    bce_loss,
    log_popularity_prior,
    sample_negatives,
    sample_shared_negatives,
    sampled_softmax_loss,
    softmax_ce_loss,
)


def test_negatives_avoid_the_users_items_and_are_in_range():
    torch.manual_seed(0)
    n_items = 12
    inputs = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    targets = torch.tensor([[0, 1, 2, 3, 9], [5, 6, 7, 8, 10]])
    neg = sample_negatives(inputs, targets, n_items, num_negatives=4)
    assert neg.shape == (2, 5, 4)
    assert int(neg.min()) >= 1 and int(neg.max()) <= n_items
    for b in range(2):
        seen = set(inputs[b].tolist()) | set(targets[b].tolist())
        assert not (set(neg[b].flatten().tolist()) & seen)


def test_negatives_are_reproducible_with_a_seed():
    inputs = torch.randint(1, 50, (8, 6))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(sample_negatives(inputs, inputs, 50, 2, g1), sample_negatives(inputs, inputs, 50, 2, g2))


def test_bce_matches_hand_computation_and_ignores_padding():
    pos = torch.tensor([[0.0, 2.0, -1.0]])
    neg = torch.tensor([[[5.0], [0.5], [-2.0]]])
    mask = torch.tensor([[False, True, True]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = (-math.log(sig(2.0)) - math.log(1 - sig(0.5)) - math.log(sig(-1.0)) - math.log(1 - sig(-2.0))) / 2
    assert abs(float(bce_loss(pos, neg, mask)) - want) < 1e-6


def test_softmax_ce_matches_cross_entropy_without_padding_class():
    torch.manual_seed(1)
    h = torch.randn(2, 3, 4)
    items = torch.randn(6, 4)
    targets = torch.tensor([[0, 1, 2], [3, 0, 5]])
    got = softmax_ce_loss(h, items, targets)
    want = []
    for b in range(2):
        for t in range(3):
            if targets[b, t] > 0:
                logits = h[b, t] @ items[1:].t()
                want.append(-torch.log_softmax(logits, 0)[targets[b, t] - 1])
    assert torch.allclose(got, torch.stack(want).mean(), atol=1e-6)


def test_log_popularity_prior_is_smoothed_and_normalised():
    freq = [0, 3, 0, 1]  # row 0 = padding
    prior = log_popularity_prior(freq)
    want = torch.tensor([4.0, 1.0, 2.0]) / 7.0
    assert prior[0] == 0
    assert torch.allclose(prior[1:].exp(), want, atol=1e-6)


def test_logit_adjustment_offsets_the_softmax_by_tau_log_prior():
    torch.manual_seed(2)
    h = torch.randn(2, 3, 4)
    items = torch.randn(6, 4)
    targets = torch.tensor([[0, 1, 2], [3, 0, 5]])
    prior = log_popularity_prior([0, 10, 1, 1, 0, 4])
    assert torch.allclose(softmax_ce_loss(h, items, targets, prior, tau=0.0), softmax_ce_loss(h, items, targets))
    got = softmax_ce_loss(h, items, targets, prior, tau=0.5)
    want = []
    for b in range(2):
        for t in range(3):
            if targets[b, t] > 0:
                logits = h[b, t] @ items[1:].t() + 0.5 * prior[1:]
                want.append(-torch.log_softmax(logits, 0)[targets[b, t] - 1])
    assert torch.allclose(got, torch.stack(want).mean(), atol=1e-6)
    # Training pushes a rare target's raw logit up harder once its rarity is accounted for.
    rare = torch.tensor([4])
    grads = []
    for tau in (0.0, 1.0):
        logits = torch.zeros(1, 6, requires_grad=True)
        adjusted_cross_entropy(logits + 0.0, rare, prior, tau).backward()
        grads.append(float(logits.grad[0, 4]))
    assert grads[1] < grads[0] < 0
    with pytest.raises(ValueError, match="prior"):
        adjusted_cross_entropy(torch.zeros(1, 6), rare, None, 1.0)


def test_logit_adjustment_config_is_checked(toy_dataset):
    from padrec.data import compute_item_stats, make_split
    from padrec.methods import METHODS, MethodContext

    split = make_split(toy_dataset)
    ctx = MethodContext(toy_dataset.num_items, split.config.max_len, compute_item_stats(toy_dataset, 4))
    bce = METHODS.build("sequential", {"hidden_size": 8, "loss": "bce", "logit_adjustment": 1.0}, context=ctx)
    assert bce.log_prior is not None
    with pytest.raises(ValueError, match=">= 0"):
        METHODS.build("sequential", {"logit_adjustment": -1.0}, context=ctx)
    m = METHODS.build("sequential", {"hidden_size": 8, "logit_adjustment": 0.5}, context=ctx)
    assert torch.allclose(m.log_prior, log_popularity_prior(ctx.item_stats.train_frequency))
    assert "log_prior" not in m.state_dict()
    no_stats = MethodContext(toy_dataset.num_items, split.config.max_len)
    with pytest.raises(ValueError, match="item statistics"):
        METHODS.build("sequential", {"logit_adjustment": 0.5}, context=no_stats)


def test_sampled_softmax_over_every_item_is_the_full_softmax():
    g = torch.Generator().manual_seed(0)
    n, d = 9, 4
    table = torch.randn(n + 1, d, generator=g)
    seq = torch.randn(5, d, generator=g)
    targets = torch.tensor([1, 4, 9, 4, 2])
    negatives = torch.arange(1, n + 1)  # every item: each row's own target is an accidental hit, masked
    got = sampled_softmax_loss(seq, table[targets], table[negatives], targets, negatives)
    want = torch.nn.functional.cross_entropy(seq @ table[1:].t(), targets - 1)
    assert torch.allclose(got, want, atol=1e-6)


def test_sampled_softmax_log_q_correction_and_logit_adjustment():
    g = torch.Generator().manual_seed(1)
    n, d = 6, 3
    table = torch.randn(n + 1, d, generator=g)
    seq = torch.randn(4, d, generator=g)
    targets = torch.tensor([2, 3, 6, 1])
    negatives = torch.tensor([5, 5, 3, 1])  # repeats and hits, as sampling with replacement gives
    log_q = torch.log(torch.tensor([0.0, 0.1, 0.2, 0.3, 0.1, 0.2, 0.1]) + 1e-12)
    prior = torch.log(torch.tensor([1.0, 0.3, 0.2, 0.2, 0.1, 0.1, 0.1]))
    got = sampled_softmax_loss(seq, table[targets], table[negatives], targets, negatives, log_q, prior, 0.5)
    rows = []
    for t, h in zip(targets.tolist(), seq):
        pos = h @ table[t] - log_q[t] + 0.5 * prior[t]
        negs = [h @ table[j] - log_q[j] + 0.5 * prior[j] for j in negatives.tolist() if j != t]
        rows.append(-pos + torch.logsumexp(torch.stack([pos, *negs]), 0))
    assert torch.allclose(got, torch.stack(rows).mean(), atol=1e-5)


def test_shared_negatives_follow_the_sampler():
    uniform = sample_shared_negatives(50, 4000, generator=torch.Generator().manual_seed(0))
    assert uniform.shape == (4000,) and uniform.min() >= 1 and uniform.max() <= 50
    assert torch.equal(uniform, sample_shared_negatives(50, 4000, generator=torch.Generator().manual_seed(0)))
    q = torch.tensor([0.0, 0.7, 0.2, 0.1])
    draws = sample_shared_negatives(3, 20000, torch.log(q.clamp_min(1e-30)), generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[0] == 0 and torch.allclose(freq[1:], q[1:], atol=0.02)


def test_sequential_trains_with_sampled_softmax(toy_dataset):
    from padrec.config import fingerprint_fields
    from padrec.data import compute_item_stats, make_split
    from padrec.methods import METHODS, MethodContext
    from padrec.methods.batches import TrainBatch

    split = make_split(toy_dataset)
    ctx = MethodContext(toy_dataset.num_items, split.config.max_len, compute_item_stats(toy_dataset, 4))
    for sampler in ("uniform", "popularity"):
        torch.manual_seed(0)
        cfg = {"hidden_size": 8, "loss": "sampled_ce", "sampled_negatives": 16, "negative_sampler": sampler}
        m = METHODS.build("sequential", cfg, context=ctx)
        assert (m.sampler_log_q is not None) == (sampler == "popularity")
        inputs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]) % (toy_dataset.num_items + 1)
        targets = torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]]) % (toy_dataset.num_items + 1)
        opt = torch.optim.Adam(m.parameters(), lr=0.05)
        losses = []
        for _ in range(30):
            loss = m._losses(TrainBatch(inputs=inputs, targets=targets, users=torch.arange(2)), None)["rec"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        assert math.isfinite(losses[0]) and sum(losses[-5:]) < sum(losses[:5])
    plain = METHODS.get("sequential").config_class()
    assert "sampled_negatives" not in fingerprint_fields(plain)  # finished runs keep their fingerprints
    with pytest.raises(ValueError, match="sampled_negatives"):
        METHODS.build("sequential", {"loss": "sampled_ce", "sampled_negatives": 0}, context=ctx)
    with pytest.raises(ValueError, match="negative_sampler"):
        METHODS.build("sequential", {"negative_sampler": "zipf"}, context=ctx)
