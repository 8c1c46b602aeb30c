"""MELT: head/tail users and items, contexts, the curriculum weights, both branch losses, the
tail-item refresh, tail-user scoring, the batches, serving, reuse and every backbone."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.experiment import Prepared, load_experiment_config, run_experiment
from padrec.losses.melt import item_curriculum_weight, user_curriculum_weight, weighted_squared_error
from padrec.methods import METHODS, BatchSettings, MethodContext, StepInfo, TrainBatch
from padrec.methods._longtail_common import training_sequences
from padrec.methods.melt.data import melt_item_contexts
from padrec.models.backbones import BACKBONES
from padrec.training.checkpoint import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("single_thread")

DIM, L = 8, 10


@pytest.fixture
def prepared(toy_dataset) -> Prepared:
    split = make_split(toy_dataset, SplitConfig(max_len=L))
    return Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, None, {})


def build(prepared: Prepared, **cfg):
    torch.manual_seed(0)
    ctx = MethodContext(prepared.dataset.num_items, L, prepared.stats)
    return METHODS.build("melt", {"hidden_size": DIM, **cfg}, context=ctx)


def melt_batches(m, prepared: Prepared, batch_size: int = 32, rank: int = 0, world: int = 1):
    m.begin_phase("melt")
    return m._melt_batches(prepared.split, BatchSettings(batch_size, 1, rank, world))


def first_batch(m, prepared: Prepared, seed: int = 0):
    return next(melt_batches(m, prepared).epoch(torch.Generator().manual_seed(seed)))[0]


def step(epoch: int, at: int = 1, epochs: int = 10) -> StepInfo:
    return StepInfo(epoch=epoch, step=at, steps_per_epoch=4, epochs=epochs)


# --- data ----------------------------------------------------------------------------------
def test_item_contexts_are_the_prefix_and_the_reversed_suffix_ending_with_the_item():
    seqs = [np.array([1, 2, 3, 4]), np.array([5])]
    ctx, owners = melt_item_contexts(seqs, 3)
    want = []
    for seq in seqs:
        for t in range(len(seq)):
            want.append((int(seq[t]), tuple(([0, 0, 0] + list(seq[: t + 1]))[-3:])))
            if len(seq) > 1:
                want.append((int(seq[t]), tuple(([0, 0, 0] + list(seq[t : t + 3])[::-1])[-3:])))
    assert sorted(zip(owners.tolist(), map(tuple, ctx.tolist()))) == sorted(want)
    assert (2, (4, 3, 2)) in want and all(c[-1] == o for o, c in want)


def test_head_tail_thresholds_follow_the_quantile_rules(prepared):
    m = build(prepared)
    melt_batches(m, prepared)
    d = m.data
    seqs = list(training_sequences(prepared.split).values())
    lengths = np.array([len(s) for s in seqs])
    assert d.user_threshold == pytest.approx(np.quantile(lengths, 0.8)) == float(m.user_threshold)
    assert d.num_head_users == int((lengths > d.user_threshold).sum()) > 0
    freq = prepared.stats.train_frequency
    assert d.item_threshold == pytest.approx(np.quantile(freq[1:][freq[1:] > 0], 0.8))
    assert set(d.head_items.tolist()) == set(np.flatnonzero(freq > d.item_threshold).tolist())
    assert set(d.tail_items.tolist()) == set(range(1, m.num_items + 1)) - set(d.head_items.tolist())
    assert d.counts.sum() == 2 * freq.sum()  # two contexts per occurrence (every sequence has 2+ items)


def test_batches_cover_every_head_user_and_item_once_per_epoch(prepared):
    m = build(prepared)
    batches = melt_batches(m, prepared, batch_size=16)
    d = m.data
    epoch = [b for (b,) in batches.epoch(torch.Generator().manual_seed(0))]
    assert len(epoch) == batches.steps_per_epoch() == math.ceil(len(prepared.split.train_inputs) / 16)
    assert sum(len(b.inputs) for b in epoch) == len(prepared.split.train_inputs)
    assert sorted(torch.cat([b.items for b in epoch]).tolist()) == sorted(d.head_items.tolist())
    assert sum(len(b.user_full) for b in epoch) == d.num_head_users
    few = max(1, math.floor(d.item_threshold))
    for b in epoch:
        n = (b.user_recent > 0).sum(1)
        assert torch.all(n >= 1) and torch.all(n <= max(1, math.ceil(d.user_threshold) - 1))
        for r in range(len(b.user_full)):  # the most recent n items of the window
            k = int(n[r])
            assert torch.equal(b.user_recent[r, -k:], b.user_full[r, -k:]) and torch.all(b.user_recent[r, :-k] == 0)
        assert torch.equal(b.item_count, d.occurrences[b.items])
        for j, item in enumerate(b.items.tolist()):
            mine = b.contexts[b.owner == j]
            assert 1 <= len(mine) <= min(int(d.counts[item]), few) and torch.all(mine[:, -1] == item)
    halves = [next(melt_batches(m, prepared, 16, r, 2).epoch(torch.Generator().manual_seed(0)))[0] for r in (0, 1)]
    joined = torch.cat([h.items for h in halves]).sort()[0]
    assert torch.equal(joined, epoch[0].items.sort()[0])


# --- curriculum and losses -----------------------------------------------------------------
def test_curriculum_weights_against_the_formulas():
    length, count = torch.tensor([6.0, 8.0, 10.0]), torch.tensor([12, 30, 200])
    t_u, l_max, t_i, span, p = 5.0, 10, 10.0, 50, 0.3
    for k in range(3):
        naive = abs(math.sin(math.pi / 2 * p + math.pi / (2 * (l_max - t_u - 1)) * (float(length[k]) - t_u - 1)))
        assert float(user_curriculum_weight(length, t_u, l_max, p)[k]) == pytest.approx(naive, rel=1e-5)
        n = min(float(count[k]), t_i + span)
        naive = abs(math.sin(math.pi / 2 * p + math.pi / 100 * (n - t_i - 1)))  # the code's π/100
        assert float(item_curriculum_weight(count, t_i, span, p)[k]) == pytest.approx(naive, rel=1e-5)
    # the span L_max − T_u − 1 is at least 1
    assert float(user_curriculum_weight(torch.tensor([10.0]), 9.0, 10, 0.0)[0]) == pytest.approx(0.0, abs=1e-6)


def test_weighted_squared_error_against_a_loop():
    g = torch.Generator().manual_seed(0)
    a, b, w = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.rand(3, generator=g)
    naive = sum(float(w[i]) * (float(a[i, j]) - float(b[i, j])) ** 2 for i in range(3) for j in range(4)) / 12
    assert float(weighted_squared_error(a, b, w)) == pytest.approx(naive, rel=1e-5)
    assert float(weighted_squared_error(a[:0], b[:0], w[:0])) == 0.0


@pytest.mark.parametrize("residual", [True, False])
def test_branch_losses_against_naive_loops(prepared, residual):
    m = build(prepared, residual_user_loss=residual, lamb_u=0.5, lamb_i=0.25)
    batch = first_batch(m, prepared)
    m.eval()  # no dropout, so the naive loops see the same representations
    with torch.no_grad():
        out = m.losses(batch, step(3))
        w_u, w_i = m.weights(batch, 0.3)
        f, W_U, W_I = m.expert.sequence_vector, m.w_user, m.w_item
        total = 0.0
        for r in range(len(batch.user_full)):
            z = f(batch.user_recent[r : r + 1])[0]
            pred = z + W_U(z) if residual else W_U(z)
            total += float(w_u[r]) * float(((pred - f(batch.user_full[r : r + 1])[0]) ** 2).sum())
        assert float(out["user"]) == pytest.approx(0.5 * total / (len(batch.user_full) * DIM), rel=1e-4)
        total = 0.0
        for j, item in enumerate(batch.items.tolist()):
            zs = f(batch.contexts[batch.owner == j])
            pred = W_I((zs + W_U(zs)).mean(0))
            total += float(w_i[j]) * float(((pred - m.expert.items.all()[item]) ** 2).sum())
        assert float(out["item"]) == pytest.approx(0.25 * total / (len(batch.items) * DIM), rel=1e-4)
    assert torch.allclose(
        w_u, user_curriculum_weight((batch.user_full > 0).sum(1).float(), m.data.user_threshold, L, 0.3)
    )
    const = build(prepared, user_weight="constant", item_weight="constant")
    melt_batches(const, prepared)
    assert all(torch.all(w == 1) for w in const.weights(batch, 0.3))


@pytest.mark.parametrize("transfer", [True, False])
def test_tail_refresh_at_the_first_step_of_each_epoch(prepared, transfer):
    m = build(prepared, refresh_user_transfer=transfer)
    batch = first_batch(m, prepared)
    d = m.data
    before = m.expert.items.all().detach().clone()
    m.train()
    m.losses(batch, step(0, at=1))  # not the first step: no refresh
    assert torch.equal(m.expert.items.all(), before)
    ref = copy.deepcopy(m).eval()  # the model the refresh reads (its own tail rows included)
    m.losses(batch, step(0, at=0))
    after = m.expert.items.all().detach().clone()
    m.losses(batch, step(0, at=0))  # a second micro-batch of the same step: no second refresh
    assert torch.equal(m.expert.items.all(), after)
    head = d.head_items.tolist()
    assert torch.equal(after[head], before[head])
    with torch.no_grad():
        for item in d.tail_items.tolist():
            zs = ref.expert.sequence_vector(d.contexts[d.indptr[item] : d.indptr[item + 1]])
            zs = zs + ref.w_user(zs) if transfer else zs
            assert torch.allclose(after[item], ref.w_item(zs.mean(0)), atol=1e-5)


# --- scoring -------------------------------------------------------------------------------
def test_tail_users_are_scored_with_the_transfer(prepared):
    m = build(prepared)
    melt_batches(m, prepared)
    m.eval()
    h = torch.as_tensor(prepared.split.test.histories[:40])
    with torch.no_grad():
        scores = m.score_all(h)
        z = m.expert.sequence_vector(h)
        tail = (h > 0).sum(1) <= m.data.user_threshold
        assert 0 < int(tail.sum()) < len(h)
        for r in range(len(h)):
            q = z[r] + m.w_user(z[r]) if tail[r] else z[r]
            assert torch.allclose(scores[r], m.expert.items.all() @ q, atol=1e-5)
        m.set_phase("pretrain")
        assert torch.allclose(m.score_all(h), z @ m.expert.items.all().t(), atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_trains_in_both_phases(prepared, backbone):
    m = build(prepared, backbone=backbone)
    s = prepared.split
    m.train()
    windows = TrainBatch(*(torch.as_tensor(x[:8]) for x in (s.train_inputs, s.train_targets, s.train_users)))
    assert torch.isfinite(sum(m.losses(windows).values()))
    batch = first_batch(m, prepared)
    m.train()
    losses = m.losses(batch, step(2))
    assert set(losses) == {"rec", "user", "item"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert m.w_user.weight.grad is not None and m.w_item.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        out = m.score_all(torch.as_tensor(s.test.histories[:3]))
    assert out.shape == (3, m.num_items + 1) and torch.isfinite(out).all()


def test_same_seed_same_numbers(prepared):
    def run():
        m = build(prepared)
        batch = first_batch(m, prepared, seed=4)
        m.train()
        torch.manual_seed(1)
        losses = {k: float(v.detach()) for k, v in m.losses(batch, step(0, at=0)).items()}
        with torch.no_grad():
            return losses, m.eval().score_all(torch.as_tensor(prepared.split.test.histories[:4]))

    (a, sa), (b, sb) = run(), run()
    assert a == b and torch.equal(sa, sb)


# --- serving -------------------------------------------------------------------------------
def test_serving_scores_equal_eval_scores(prepared, tmp_path):
    m = build(prepared)
    melt_batches(m, prepared)
    m.eval()
    h = torch.as_tensor(prepared.split.test.histories[:12])
    with torch.no_grad():
        want = m.score_all(h)
        served = m.for_serving()
        assert served.data is None and m.data is not None
        assert torch.allclose(served.score_all(h), want, atol=1e-5)
        f = served.score_factors()
        assert torch.allclose(f.query(h) @ f.items.t(), want, atol=1e-5)
    save_weights(served, tmp_path / "serving.safetensors")
    clone = build(prepared)
    clone.set_phase("melt")
    clone = clone.for_serving(copy_model=False)
    load_weights(clone, tmp_path / "serving.safetensors")  # T_u comes with the weights
    with torch.no_grad():
        assert float(clone.user_threshold) == m.data.user_threshold
        assert torch.allclose(clone.score_all(h), want, atol=1e-5)


# --- end to end ------------------------------------------------------------------------------
def test_end_to_end_training_reuse_and_serving(tmp_path, prepared):
    raw = {
        "name": "t",
        "output_dir": str(tmp_path / "run"),
        "method": "melt",
        "method_config": {"hidden_size": 16, "backbone_config": {"dropout": 0.1}},
        "split": {"max_len": L},
        "stats": {"num_buckets": 4},
        "train": {"epochs": 6, "batch_size": 32, "lr": 0.01, "progress": False, "monitor": "NDCG@5"},
        "phase_train": {"melt": {"epochs": 3}},
        "eval": {"ks": [5]},
    }
    res = run_experiment(load_experiment_config(raw), prepared)
    assert [p["phase"] for p in res["phases"]] == ["pretrain", "melt"]
    melt = res["phases"][1]["history"]
    assert len(melt) == 3 and all(math.isfinite(r[k]) for r in melt for k in ("loss_rec", "loss_user", "loss_item"))
    # random ranking: NDCG@5 = (1/40) Σ_{r=1..5} 1/log2(r+1) ≈ 0.074
    assert res["test"]["overall"]["NDCG@5"] > 0.1
    report = res["method_report"]
    assert report["head_users"] > 0 and report["tail_items"] > 0
    again = run_experiment(load_experiment_config(raw), prepared)  # T_u is phase state
    assert [p["stopped"] for p in again["phases"]] == ["reused", "reused"]
    assert again["test"]["overall"] == res["test"]["overall"]
    assert again["method_report"]["user_threshold"] == report["user_threshold"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "run")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5


def test_shipped_config_is_valid():
    """``configs/melt.yaml`` passes the checks of ``padrec train -c`` (it is not run here)."""
    from pathlib import Path

    from padrec.commands.train import build_config_dict

    path = Path(__file__).resolve().parents[1] / "configs" / "melt.yaml"
    cfg = load_experiment_config(build_config_dict(path, {}, []))
    assert cfg.method == "melt" and cfg.split.max_len == 20
    assert cfg.method_config["hidden_size"] == 64 and "text" not in cfg.method_config
