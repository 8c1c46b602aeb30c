"""CITIES: the contexts and head/tail split, the embedding-inference function and its loss,
the two phases, the inferred tail rows, serving, reuse and every backbone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.experiment import Prepared, load_experiment_config, run_experiment
from padrec.losses.cities import embedding_inference_loss
from padrec.methods import METHODS, BatchSettings, MethodContext, TrainBatch
from padrec.methods._longtail_common import head_by_fraction, training_sequences
from padrec.methods.cities.data import build_item_contexts, item_contexts
from padrec.models.backbones import BACKBONES
from padrec.models.items.cities import EmbeddingInference
from padrec.training.checkpoint import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("single_thread")

DIM, C, L = 8, 3, 10


@pytest.fixture
def prepared(toy_dataset) -> Prepared:
    split = make_split(toy_dataset, SplitConfig(max_len=L))
    return Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, None, {})


def build(prepared: Prepared, **cfg):
    torch.manual_seed(0)
    ctx = MethodContext(prepared.dataset.num_items, L, prepared.stats)
    return METHODS.build("cities", {"hidden_size": DIM, "context_size": C, **cfg}, context=ctx)


def window_batch(prepared: Prepared, n: int = 16) -> TrainBatch:
    s = prepared.split
    return TrainBatch(torch.as_tensor(s.train_inputs[:n]), torch.as_tensor(s.train_targets[:n]), torch.zeros(n).long())


def infer_batches(m, prepared: Prepared, batch_size: int = 8):
    m.begin_phase("infer")
    return m._context_batches(prepared.split, BatchSettings(batch_size))


# --- data ----------------------------------------------------------------------------------
@pytest.mark.parametrize("examples", ["shifted", "prefixes"])
def test_training_sequences_are_whole_training_parts(toy_dataset, examples):
    split = make_split(toy_dataset, SplitConfig(max_len=4, train_examples=examples))  # windows shorter than sequences
    seqs = training_sequences(split)
    assert set(seqs) == set(range(len(toy_dataset.sequences)))
    for u, seq in enumerate(toy_dataset.sequences):
        assert seqs[u].tolist() == list(seq[:-2])


def test_item_contexts_match_a_naive_construction():
    seqs = {0: np.array([1, 2, 3, 4, 5]), 1: np.array([2, 6]), 2: np.array([6, 2, 2])}
    n, c = 6, 2
    want = []
    for seq in seqs.values():
        for t in range(len(seq)):
            if len(seq[max(0, t - c) : t + 1 + c]) <= 2:  # the official code keeps windows of 3+ items
                continue
            left = [0] * c + list(seq[max(0, t - c) : t])
            right = list(seq[t + 1 : t + 1 + c]) + [0] * c
            want.append((int(seq[t]), tuple(left[-c:] + [n + 1] + right[:c])))
    ctx, owners = item_contexts(seqs, n, c)
    assert ctx.shape == (len(want), 2 * c + 1)
    assert sorted(zip(owners.tolist(), map(tuple, ctx.tolist()))) == sorted(want)
    assert (0, 1, n + 1, 3, 4) in [tuple(r) for r in ctx.tolist()]  # item 2 of sequence 0


def test_head_tail_rules(prepared):
    freq = np.array([0, 5, 9, 9, 1, 0, 3, 7, 2, 2, 4, 8])  # 10 items occur
    head = head_by_fraction(freq, 0.2)
    assert np.flatnonzero(head).tolist() == [2, 3]  # floor(0.2 * 10) = 2 most frequent, ties by id
    n = prepared.dataset.num_items
    by_fraction = build_item_contexts(prepared.split, n, C, 0.2)
    assert by_fraction.head.sum() == int(0.2 * (by_fraction.frequency[1:] > 0).sum())
    by_count = build_item_contexts(prepared.split, n, C, 0.2, tail_max_frequency=20)
    assert np.array_equal(by_count.head[1:], by_count.frequency[1:] > 20)
    assert np.array_equal(by_fraction.frequency, prepared.stats.train_frequency)


# --- loss and inference function -------------------------------------------------------------
def test_inference_loss_against_the_formula():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    naive = sum((float(pred[i, j]) - float(target[i, j])) ** 2 for i in range(4) for j in range(3)) / 12
    assert float(embedding_inference_loss(pred, target)) == pytest.approx(naive, rel=1e-6)


def test_inference_function_pools_real_positions_and_is_order_free_over_contexts():
    torch.manual_seed(0)
    f = EmbeddingInference(DIM, context_size=2, num_heads=2).eval()
    table = torch.randn(7, DIM)
    table[0] = 0
    contexts = torch.tensor([[[0, 1, 7, 2, 3], [4, 5, 7, 0, 0], [0, 0, 7, 6, 1]]])  # 1 item, K = 3, 7 = mask
    with torch.no_grad():
        out = f(table, contexts)
        assert out.shape == (1, DIM)
        # padding is neither attended nor pooled: the padding row's vector does not matter
        noisy = table.clone()
        noisy[0] = torch.randn(DIM)
        assert torch.allclose(f(noisy, contexts), out, atol=1e-5)
        # the aggregator has no positions: the order of the contexts does not matter
        assert torch.allclose(f(table, contexts[:, [2, 0, 1]]), out, atol=1e-5)
        # per-context vectors: the interpreter's outputs averaged over non-padding positions
        x = f.embed(table, contexts[0])
        keep = contexts[0] > 0
        for layer in f.interpreter:
            x = layer(x, keep)
        naive = torch.stack([x[k][keep[k]].mean(0) for k in range(3)])
        assert torch.allclose(f.interpret(table, contexts[0]), naive, atol=1e-5)
        assert torch.allclose(f.aggregate(naive.unsqueeze(0)), out, atol=1e-5)


def test_head_context_batches(prepared):
    m = build(prepared, max_shots=4)
    batches = infer_batches(m, prepared, batch_size=6)
    data = m.contexts
    head = set(data.items(head=True).tolist())
    steps = list(batches.epoch(torch.Generator().manual_seed(0)))
    assert len(steps) == batches.steps_per_epoch() == math.ceil(len(head) / 6)
    for (b,) in steps:
        B, K, S = b.contexts.shape
        assert B == 6 and 1 <= K <= 4 and S == 2 * C + 1
        assert set(b.items.tolist()) <= head
        for i, item in enumerate(b.items.tolist()):
            own = {tuple(r) for r in data.contexts[data.indptr[item] : data.indptr[item + 1]].tolist()}
            assert {tuple(r) for r in b.contexts[i].tolist()} <= own
    again = list(batches.epoch(torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0].contexts, b[0].contexts) for a, b in zip(steps, again))
    halves = [
        next(m._context_batches(prepared.split, BatchSettings(6, 1, r, 2)).epoch(torch.Generator().manual_seed(0)))
        for r in (0, 1)
    ]
    assert torch.equal(torch.cat([halves[0][0].items, halves[1][0].items]).sort()[0], steps[0][0].items.sort()[0])


# --- phases --------------------------------------------------------------------------------
def test_phase_infer_trains_only_the_inference_function_and_keeps_its_state(prepared):
    m = build(prepared)
    assert [p.name for p in m.phases()] == ["pretrain", "infer"]
    batches = infer_batches(m, prepared)
    params = m.trainable_parameters()
    ids = {id(p) for p in params}
    assert {id(p) for p in m.inference.parameters()} <= ids
    assert id(m.items.inferred) in ids and id(m.items.replaced) in ids  # state, saved with the phase
    assert not m.items.inferred.requires_grad and not ({id(p) for p in m.expert.parameters() if p.requires_grad} & ids)
    m.train()
    assert not m.expert.training  # frozen
    (batch,) = next(batches.epoch(torch.Generator().manual_seed(0)))
    loss = m.losses(batch)["infer"]
    assert torch.isfinite(loss)
    loss.backward()
    assert m.expert.items.ids.embedding.weight.grad is None
    assert m.inference.mask_token.grad is not None and m.inference.out.weight.grad.abs().sum() > 0
    m.begin_phase("pretrain")
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.expert.parameters() if p.requires_grad}


def test_tail_rows_are_the_inference_of_all_their_contexts(prepared):
    m = build(prepared)
    infer_batches(m, prepared)
    m.eval()
    h = torch.as_tensor(prepared.split.test.histories[:5])
    with torch.no_grad():
        before = m.items.ids.all().clone()
        scores = m.score_all(h)  # infers the tail rows first
        table = m.items.all()
        data = m.contexts
        tail = data.items(head=False).tolist()
        assert tail and int(m.items.replaced.sum()) == len(tail)
        for item in tail:
            ctx = data.contexts[data.indptr[item] : data.indptr[item + 1]].unsqueeze(0)
            assert torch.allclose(table[item], m.inference(before, ctx)[0], atol=1e-5)
        kept = [i for i in range(1, m.num_items + 1) if i not in set(tail)]
        assert torch.equal(table[kept], before[kept]) and torch.all(table[0] == 0)
        seq = m.expert.backbone(table[h], h == 0)[:, -1]
        assert torch.allclose(scores, seq @ table.t(), atol=1e-5)
    assert m.report()["replaced_items"] == len(tail)


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_trains_in_both_phases(prepared, backbone):
    m = build(prepared, backbone=backbone)
    m.train()
    loss = sum(m.losses(window_batch(prepared, 8)).values())
    assert torch.isfinite(loss)
    loss.backward()
    (batch,) = next(infer_batches(m, prepared).epoch(torch.Generator().manual_seed(1)))
    m.train()
    assert torch.isfinite(m.losses(batch)["infer"])
    m.eval()
    with torch.no_grad():
        out = m.score_all(torch.as_tensor(prepared.split.test.histories[:3]))
    assert out.shape == (3, m.num_items + 1) and torch.isfinite(out).all()


def test_same_seed_same_numbers(prepared):
    def losses():
        m = build(prepared)
        (batch,) = next(infer_batches(m, prepared).epoch(torch.Generator().manual_seed(3)))
        m.train()
        torch.manual_seed(5)
        loss = float(m.losses(batch)["infer"].detach())
        with torch.no_grad():
            return loss, m.eval().score_all(torch.as_tensor(prepared.split.test.histories[:4]))

    (a, sa), (b, sb) = losses(), losses()
    assert a == b and torch.equal(sa, sb)


# --- serving ---------------------------------------------------------------------------------
def test_serving_scores_equal_eval_scores(prepared, tmp_path):
    m = build(prepared)
    infer_batches(m, prepared)
    m.eval()
    h = torch.as_tensor(prepared.split.test.histories[:6])
    with torch.no_grad():
        want = m.score_all(h)
        served = m.for_serving()
        assert served.inference is None and served.contexts is None and m.contexts is not None
        assert torch.allclose(served.score_all(h), want, atol=1e-5)
        f = served.score_factors()
        assert torch.allclose(f.query(h) @ f.items.t(), want, atol=1e-5)
    assert served.new_items_unsupported() is not None  # ID-only
    save_weights(served, tmp_path / "serving.safetensors")
    clone = build(prepared)
    clone.set_phase("infer")
    clone = clone.for_serving(copy_model=False)
    load_weights(clone, tmp_path / "serving.safetensors")
    with torch.no_grad():
        assert torch.allclose(clone.score_all(h), want, atol=1e-5)


# --- end to end ------------------------------------------------------------------------------
def test_end_to_end_training_reuse_and_serving(tmp_path, prepared):
    raw = {
        "name": "t",
        "output_dir": str(tmp_path / "run"),
        "method": "cities",
        "method_config": {"hidden_size": 16, "context_size": C, "backbone_config": {"dropout": 0.1}},
        "split": {"max_len": L},
        "stats": {"num_buckets": 4},
        "train": {"epochs": 6, "batch_size": 32, "lr": 0.01, "progress": False, "monitor": "NDCG@5"},
        "phase_train": {"infer": {"epochs": 3, "lr": 0.003}},
        "eval": {"ks": [5]},
    }
    res = run_experiment(load_experiment_config(raw), prepared)
    assert [p["phase"] for p in res["phases"]] == ["pretrain", "infer"]
    for phase in res["phases"]:
        losses = [row[k] for row in phase["history"] for k in row if k.startswith("loss_")]
        assert losses and all(math.isfinite(v) for v in losses)
    # random ranking: NDCG@5 = (1/40) Σ_{r=1..5} 1/log2(r+1) ≈ 0.074
    assert res["test"]["overall"]["NDCG@5"] > 0.1
    report = res["method_report"]
    assert report["replaced_items"] == report["tail_items"] > 0
    again = run_experiment(load_experiment_config(raw), prepared)  # the inferred rows are phase state
    assert [p["stopped"] for p in again["phases"]] == ["reused", "reused"]
    assert again["test"]["overall"] == res["test"]["overall"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "run")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5


def test_shipped_config_is_valid():
    """``configs/cities.yaml`` passes the checks of ``padrec train -c`` (it is not run here)."""
    from pathlib import Path

    from padrec.commands.train import build_config_dict

    path = Path(__file__).resolve().parents[1] / "configs" / "cities.yaml"
    cfg = load_experiment_config(build_config_dict(path, {}, []))
    assert cfg.method == "cities" and cfg.split.max_len == 20
    assert cfg.method_config["hidden_size"] == 64 and "text" not in cfg.method_config
