"""LOAM: the transition graph of the training windows, niche walks, walk rows, the batches that
carry them, Tail Session Mixup against a naive re-implementation, backbones, end-to-end
training, determinism and serving."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.experiment import Prepared, load_experiment_config, run_experiment
from padrec.losses.loam import mixup_partners, tail_session_mixup_loss
from padrec.methods import METHODS, MethodContext, TrainBatch
from padrec.methods.batches import BatchSettings
from padrec.methods.loam import LOAMBatch, NicheWalkBatches, build_transition_graph
from padrec.methods.loam.method import head_items
from padrec.methods.loam.walks import niche_walks, training_transitions, walk_rows

pytestmark = pytest.mark.usefixtures("single_thread")

L = 10


@pytest.fixture
def prepared(toy_dataset) -> Prepared:
    split = make_split(toy_dataset, SplitConfig(max_len=L))
    return Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, None, {})


def build(prepared: Prepared, **cfg):
    torch.manual_seed(0)
    ctx = MethodContext(prepared.dataset.num_items, L, prepared.stats)
    return METHODS.build("loam", {"hidden_size": 8, **cfg}, context=ctx)


def batch_of(prepared: Prepared, n: int = 16) -> TrainBatch:
    s = prepared.split
    return TrainBatch(torch.as_tensor(s.train_inputs[:n]), torch.as_tensor(s.train_targets[:n]), torch.arange(n))


# --- the graph -----------------------------------------------------------------------------
def test_graph_holds_exactly_the_training_transitions(prepared, toy_dataset):
    naive = set()
    for seq in toy_dataset.sequences:
        part = seq[:-2]  # training part (leave-one-out with a validation item)
        naive |= {(int(a), int(b)) for a, b in zip(part[:-1], part[1:])}
    pairs = training_transitions(prepared.split.train_inputs, prepared.split.train_targets)
    assert {tuple(p) for p in pairs.tolist()} == naive
    pop = prepared.stats.train_frequency
    no_cap = build_transition_graph(prepared.split.train_inputs, prepared.split.train_targets, pop, pop > 0, 10**6)
    got = {(int(a), b) for b in range(toy_dataset.num_items + 1) for a in no_cap.predecessors(b)}
    assert got == naive
    # validation/test transitions that never occur in training are not edges
    held_out = {(int(s[-3]), int(s[-2])) for s in toy_dataset.sequences} | {
        (int(s[-2]), int(s[-1])) for s in toy_dataset.sequences
    }
    assert (held_out - naive) and not (held_out - naive) & got


def test_head_items_lose_edges_to_the_mean_in_degree(prepared):
    pop = prepared.stats.train_frequency
    head = head_items(pop, 0.2)
    order = np.argsort(-pop[1:], kind="stable") + 1
    assert head.sum() == int(0.2 * (pop[1:] > 0).sum()) and head[order[: head.sum()]].all()
    s = prepared.split
    full = build_transition_graph(s.train_inputs, s.train_targets, pop, head, 10**6)
    degree = np.diff(full.indptr)
    cap = max(1, round(float(degree[degree > 0].mean())))
    graph = build_transition_graph(s.train_inputs, s.train_targets, pop, head)
    assert graph.cap == cap
    for item in range(1, len(pop)):
        kept, every = graph.predecessors(item), full.predecessors(item)
        assert set(kept) <= set(every)
        assert len(kept) == (min(cap, len(every)) if head[item] else len(every))
    again = build_transition_graph(s.train_inputs, s.train_targets, pop, head)
    assert np.array_equal(graph.preds, again.preds)  # the one-off cut is seeded


# --- the walks -----------------------------------------------------------------------------
def naive_greedy_walk(preds: dict[int, list[int]], pop: np.ndarray, allowed: set[int], start: int, walk_len: int):
    """alpha = 0: always the least popular allowed predecessor (lowest id among ties)."""
    path = [start]
    while len(path) <= walk_len:
        cand = sorted(p for p in preds.get(path[-1], []) if p in allowed)
        if not cand:
            break
        path.append(min(cand, key=lambda p: (pop[p], p)))
    return (list(reversed(path[1:])), start) if len(path) > 2 else None


def test_niche_walks_against_a_naive_walk(prepared):
    s = prepared.split
    pop = prepared.stats.train_frequency
    graph = build_transition_graph(s.train_inputs, s.train_targets, pop, head_items(pop, 0.2))
    preds = {b: graph.predecessors(b).tolist() for b in range(len(pop))}
    rng = np.random.default_rng(0)
    allowed = rng.random(len(pop)) < 0.7
    allowed[0] = False
    starts = np.arange(1, len(pop))
    sessions, targets = niche_walks(graph, allowed, starts, np.random.default_rng(1), 6, 1, alpha=0.0)
    want = [w for w in (naive_greedy_walk(preds, pop, set(np.flatnonzero(allowed)), int(t), 6) for t in starts) if w]
    assert list(zip(sessions, targets)) == want
    # random steps (alpha = 1) still follow edges among allowed items, and the cap holds
    sessions, targets = niche_walks(graph, allowed, starts, np.random.default_rng(2), 10, 5, alpha=1.0, max_walks=7)
    assert len(sessions) == 7
    for session, target in zip(sessions, targets):
        seq = session + [target]
        assert 2 <= len(session) <= 10 and all(allowed[i] for i in session)
        assert all(a in preds[b] for a, b in zip(seq[:-1], seq[1:]))


def test_walk_rows_follow_the_split_shape():
    x, y = walk_rows([[3, 4, 5], list(range(1, 8))], [6, 9], max_len=5, shifted=True)
    assert x.tolist() == [[0, 0, 3, 4, 5], [3, 4, 5, 6, 7]]
    assert y.tolist() == [[0, 0, 4, 5, 6], [4, 5, 6, 7, 9]]
    x, y = walk_rows([[3, 4, 5]], [6], max_len=5, shifted=False)
    assert x.tolist() == [[0, 0, 3, 4, 5]] and y.tolist() == [[0, 0, 0, 0, 6]]


def test_batches_append_walks_deterministically(prepared):
    m = build(prepared)
    settings = BatchSettings(batch_size=64)

    def epoch(seed):
        return list(m.current_phase.batches(prepared.split, settings).epoch(torch.Generator().manual_seed(seed)))

    a, b = epoch(0), epoch(0)
    assert all(isinstance(mb, LOAMBatch) for step in a for mb in step)
    walks = sum(mb.walks for step in a for mb in step)
    assert walks > 0
    for sa, sb in zip(a, b):
        assert torch.equal(sa[0].inputs, sb[0].inputs) and torch.equal(sa[0].targets, sb[0].targets)
    mb = a[0][0]
    n = mb.inputs.shape[0] - mb.walks
    assert mb.walks <= int(n * 0.1) and (mb.users[n:] == -1).all() and (mb.targets[n:, -1] > 0).all()
    assert mb.to("cpu").walks == mb.walks
    assert isinstance(m.transition_graph(prepared.split), type(m.graph)) and m.report()["nwa_graph"]["edges"] > 0
    accumulated = NicheWalkBatches(prepared.split, BatchSettings(64, accumulation=2), m.graph)
    assert all(len(step) == 2 for step in accumulated.epoch(torch.Generator().manual_seed(0)))


# --- Tail Session Mixup ----------------------------------------------------------------------
def naive_tsm(h, targets, is_tail, table, lam, other_rows=True):
    B, Lh, _ = h.shape
    slots = [(b, t) for b in range(B) for t in range(Lh) if targets[b, t] > 0]
    total, count = 0.0, 0
    for b, t in slots:
        if not is_tail[targets[b, t]]:
            continue
        best, partner = -math.inf, None
        for b2, t2 in slots:
            if (b2, t2) == (b, t) or (other_rows and b2 == b):
                continue
            cos = float(F.cosine_similarity(h[b, t], h[b2, t2], dim=0))
            if cos > best:
                best, partner = cos, (b2, t2)
        if partner is None:
            continue
        mixed = lam * h[b, t] + (1 - lam) * h[partner]
        logits = [float(mixed @ table[i]) for i in range(1, table.shape[0])]
        top = max(logits)
        lse = top + math.log(sum(math.exp(v - top) for v in logits))
        total += lse - logits[int(targets[b, t]) - 1]
        count += 1
    return total / count


@pytest.mark.parametrize("other_rows", [True, False])
def test_tail_session_mixup_against_a_naive_formula(other_rows):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(3, 4, 5, generator=g)
    table = torch.randn(9, 5, generator=g)
    table[0] = 0
    targets = torch.tensor([[0, 2, 5, 7], [0, 0, 3, 8], [1, 6, 6, 4]])
    is_tail = torch.zeros(9, dtype=torch.bool)
    is_tail[[5, 6, 7, 8]] = True
    got = tail_session_mixup_loss(h, targets, is_tail, table, 0.8, "cosine", other_rows)
    assert float(got) == pytest.approx(naive_tsm(h, targets, is_tail, table, 0.8, other_rows), rel=1e-5)
    # no tail session: a zero that keeps the graph
    none = tail_session_mixup_loss(h.requires_grad_(), targets, torch.zeros(9, dtype=torch.bool), table)
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_random_partners_are_admissible():
    torch.manual_seed(0)
    vecs = torch.randn(6, 3)
    sessions = torch.tensor([0, 0, 1, 1, 2, 2])
    q, p = mixup_partners(vecs, torch.tensor([0, 2, 4]), sessions, "random")
    assert q.tolist() == [0, 2, 4] and (sessions[p] != sessions[q]).all()
    q, p = mixup_partners(vecs, torch.tensor([0]), torch.zeros(6, dtype=torch.long))
    assert q.numel() == 0  # every other session is the query's own sequence


def test_losses_and_ablation_switches(prepared):
    b = batch_of(prepared)
    assert set(build(prepared).losses(b)) == {"rec", "tsm"}
    assert set(build(prepared, tsm=False).losses(b)) == {"rec"}
    assert build(prepared, nwa=False).current_phase.batches is None
    m = build(prepared).eval()
    with torch.no_grad():
        h = m.expert.encode(b.inputs)
        want = tail_session_mixup_loss(h, b.targets, m.is_tail, m.expert.items.all(), 0.8)
        assert torch.allclose(m.losses(b)["tsm"], want)
    with pytest.raises(ValueError, match="mixup_lambda"):
        build(prepared, mixup_lambda=1.5)


# --- backbones, determinism, end to end, serving ----------------------------------------------
@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_builds_and_trains_on_backbones(prepared, backbone):
    m = build(prepared, backbone=backbone)
    step = next(iter(m.current_phase.batches(prepared.split, BatchSettings(32)).epoch(torch.Generator())))
    losses = m.losses(step[0])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert m.expert.items.embedding.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        h = torch.as_tensor(prepared.split.test.histories[:3])
        assert m.score_all(h).shape == (3, prepared.dataset.num_items + 1)


def test_same_seed_same_numbers(prepared):
    b = batch_of(prepared)
    out = []
    for _ in range(2):
        m = build(prepared)
        torch.manual_seed(1)
        out.append({k: float(v.detach()) for k, v in m.losses(b).items()})
    assert out[0] == out[1]


def test_end_to_end_training_and_serving(tmp_path, prepared):
    cfg = load_experiment_config(
        {
            "name": "t",
            "output_dir": str(tmp_path / "run"),
            "method": "loam",
            "method_config": {"hidden_size": 16, "backbone_config": {"dropout": 0.1}},
            "split": {"max_len": L},
            "stats": {"num_buckets": 4},
            "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "progress": False, "monitor": "NDCG@5"},
            "eval": {"ks": [5]},
        }
    )
    res = run_experiment(cfg, prepared)
    hist = res["phases"][0]["history"]
    for row in hist:
        assert math.isfinite(row["loss_rec"]) and math.isfinite(row["loss_tsm"])
    assert hist[-1]["loss_rec"] < hist[0]["loss_rec"]
    assert res["test"]["overall"]["NDCG@5"] > 0.1  # random ranking: about 0.05
    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "run")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5
    m = build(prepared).eval()
    h = torch.as_tensor(prepared.split.test.histories[:6])
    with torch.no_grad():
        served = m.for_serving()
        assert torch.allclose(served.score_all(h), m.score_all(h), atol=1e-5)
    assert served.new_items_unsupported() is not None  # ID-only: no item from text
