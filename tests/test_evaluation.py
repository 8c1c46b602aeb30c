"""Tests of padrec.evaluation: metrics against hand-computed values, full ranking against a
brute-force reference (ties, history handling, chunking), results I/O and reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rich.console import Console

from padrec.config import ConfigError, from_dict
from padrec.data.protocols import EvalSet
from padrec.data.stats import ItemStats
from padrec.evaluation import (
    EvalConfig,
    EvalResult,
    coverage,
    evaluate,
    grouped_metrics,
    hit_rate,
    ndcg,
    parse_metric,
    per_user_metric,
    print_result,
    print_runs,
    ranking_metrics,
    summarize,
    tail_coverage,
)
from padrec.evaluation.ranking import check_metric_name

INV_LOG2_3 = 0.6309297535714575  # 1 / log2(3)
INV_LOG2_6 = 0.38685280723454163  # 1 / log2(6)
INV_LOG2_11 = 0.2890648263178879  # 1 / log2(11)
INV_LOG2_12 = 0.2789429456511298  # 1 / log2(12)


# --------------------------------------------------------------------------- helpers
def make_eval_set(
    histories: list[list[int]], targets: list[int], seen: list[list[int]] | None = None, L: int = 4
) -> EvalSet:
    """EvalSet from Python lists; ``seen`` defaults to the histories."""
    seen = histories if seen is None else seen
    H = np.zeros((len(histories), L), dtype=np.int64)
    for i, h in enumerate(histories):
        h = h[-L:]
        if h:
            H[i, L - len(h) :] = h
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    items = np.asarray([x for s in seen for x in s], dtype=np.int64)
    return EvalSet(np.arange(len(targets), dtype=np.int64), H, np.asarray(targets, np.int64), indptr, items)


def table_score_fn(scores: np.ndarray):
    """score_fn returning row ``h[:, 0]`` of a fixed score table (see ``indexed_eval_set``)."""
    table = torch.as_tensor(scores)

    def fn(h: torch.Tensor) -> torch.Tensor:
        return table[h[:, 0]].to(h.device)

    return fn


def indexed_eval_set(n_users: int, targets, seen) -> EvalSet:
    """EvalSet whose first history column is the user's row in a score table."""
    H = np.zeros((n_users, 2), dtype=np.int64)
    H[:, 0] = np.arange(n_users)
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    items = np.asarray([x for s in seen for x in s], dtype=np.int64)
    return EvalSet(np.arange(n_users, dtype=np.int64), H, np.asarray(targets, np.int64), indptr, items)


def reference(scores: np.ndarray, targets, seen, mode: str, kmax: int):
    """Brute force: order by (score desc, id asc) after masking; -inf/NaN are unrankable."""
    U, n1 = scores.shape
    n = n1 - 1
    ranks, tops = [], []
    ids = np.arange(n1)
    for u in range(U):
        s = scores[u].astype(np.float64).copy()
        s[np.isnan(s)] = -np.inf
        s[0] = -np.inf
        if mode == "remove":
            s[list(seen[u])] = -np.inf
        elif mode == "zero":
            s[list(seen[u])] = 0.0
        order = np.lexsort((ids, -s))
        t = targets[u]
        ranks.append(n if s[t] == -np.inf else int(np.nonzero(order == t)[0][0]))
        top = order[:kmax].copy()
        top[s[top] == -np.inf] = 0
        tops.append(top)
    return np.asarray(ranks), np.stack(tops)


def make_stats(n: int, bucket: list[int], group: list[int], head: list[int], num_buckets: int) -> ItemStats:
    """Hand-made ItemStats for items 1..n (row 0 = padding)."""
    b = np.asarray([0] + bucket, dtype=np.int64)
    g = np.asarray([-1] + group, dtype=np.int64)
    is_head = np.zeros(n + 1, dtype=bool)
    is_head[head] = True
    f = np.zeros(n + 1, dtype=np.int64)
    return ItemStats(f, f, b, num_buckets, [(0, 0, 0, 0)] * num_buckets, g, is_head)


# --------------------------------------------------------------------------- metrics
RANKS = np.array([0, 1, 4, 9, 10, 30])


def test_hr_and_ndcg_hand_computed():
    assert hit_rate(RANKS, 1) == pytest.approx(1 / 6)
    assert hit_rate(RANKS, 5) == pytest.approx(3 / 6)
    assert hit_rate(RANKS, 10) == pytest.approx(4 / 6)
    assert ndcg(RANKS, 1) == pytest.approx(1 / 6)
    assert ndcg(RANKS, 5) == pytest.approx((1 + INV_LOG2_3 + INV_LOG2_6) / 6)
    assert ndcg(RANKS, 10) == pytest.approx((1 + INV_LOG2_3 + INV_LOG2_6 + INV_LOG2_11) / 6)
    assert ndcg(RANKS, 20) == pytest.approx((1 + INV_LOG2_3 + INV_LOG2_6 + INV_LOG2_11 + INV_LOG2_12) / 6)
    assert math.isnan(hit_rate(np.array([], dtype=np.int64), 5))


def test_per_user_and_names():
    np.testing.assert_allclose(per_user_metric(np.array([0, 2, 3]), "NDCG@3"), [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(per_user_metric(np.array([0, 2, 3]), "HR@3"), [1.0, 1.0, 0.0])
    assert parse_metric("NDCG@10") == ("NDCG", 10)
    assert parse_metric("TailCoverage@5") == ("TailCoverage", 5)
    for bad in ("ndcg@10", "NDCG@0", "MRR@10", "NDCG"):
        with pytest.raises(ValueError):
            parse_metric(bad)
    with pytest.raises(ValueError):
        per_user_metric(RANKS, "Coverage@5")
    assert list(ranking_metrics(RANKS, [5, 10])) == ["HR@5", "HR@10", "NDCG@5", "NDCG@10"]


def test_grouped_metrics_and_empty_group():
    labels = np.array([0, 0, 1, 1, 1, 2])
    out = grouped_metrics(RANKS, labels, {"a": 0, "b": 1, "empty": 7}, [5])
    assert out["a"] == {"HR@5": 1.0, "NDCG@5": pytest.approx((1 + INV_LOG2_3) / 2), "users": 2}
    assert out["b"]["HR@5"] == pytest.approx(1 / 3)
    assert out["b"]["NDCG@5"] == pytest.approx(INV_LOG2_6 / 3)
    assert out["empty"]["users"] == 0 and math.isnan(out["empty"]["NDCG@5"])


def test_coverage_and_tail_coverage():
    topk = np.array([[1, 2, 3], [2, 3, 4], [0, 0, 0]])
    assert coverage(topk, 2, 10) == pytest.approx(3 / 10)
    assert coverage(topk, 3, 10) == pytest.approx(4 / 10)
    is_head = np.zeros(11, dtype=bool)
    is_head[[1, 2]] = True  # tail = items 3..10 (8 items)
    assert tail_coverage(topk, 2, is_head) == pytest.approx(1 / 8)
    assert tail_coverage(topk, 3, is_head) == pytest.approx(2 / 8)


def test_summarize_groups_buckets_head_tail():
    # 4 items: bucket 1,1,2,2; groups warm,warm,cold,cold; head = {1}.
    stats = make_stats(4, [1, 1, 2, 2], [0, 0, 2, 2], [1], num_buckets=2)
    ranks = np.array([0, 3, 1, 4])
    targets = np.array([1, 2, 3, 4])
    topk = np.array([[1, 2], [2, 1], [1, 2], [3, 1]])
    s = summarize(ranks, targets, [1, 2], 4, stats, topk)
    assert s["overall"]["HR@2"] == pytest.approx(0.5)
    assert s["by_bucket"][1] == {"HR@1": 0.5, "HR@2": 0.5, "NDCG@1": 0.5, "NDCG@2": 0.5, "users": 2}
    assert s["by_bucket"][2]["NDCG@2"] == pytest.approx(INV_LOG2_3 / 2)
    assert s["by_group"]["warm"]["users"] == 2 and s["by_group"]["median"]["users"] == 0
    assert s["by_group"]["cold"]["HR@2"] == pytest.approx(0.5)
    assert s["head_tail"]["head"] == {"HR@1": 1.0, "HR@2": 1.0, "NDCG@1": 1.0, "NDCG@2": 1.0, "users": 1}
    assert s["head_tail"]["tail"]["HR@2"] == pytest.approx(1 / 3)
    assert s["coverage"] == {
        "Coverage@1": pytest.approx(3 / 4),
        "Coverage@2": pytest.approx(3 / 4),
        "TailCoverage@1": pytest.approx(2 / 3),
        "TailCoverage@2": pytest.approx(2 / 3),
    }


def test_popularity_groups_count_whole_sequences_with_faerecs_edges():
    """FAERec's groups 1-4, 5-9, 10-19, 20-49, 50+ of the target's full-sequence count."""
    from padrec.data.stats import popularity_bin, popularity_bin_labels

    assert popularity_bin_labels() == ["1-4", "5-9", "10-19", "20-49", "50+"]
    assert popularity_bin(np.array([0, 1, 4, 5, 9, 10, 19, 20, 49, 50, 5000])).tolist() == [
        -1,
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]
    stats = make_stats(4, [1, 1, 2, 2], [0, 0, 2, 2], [1], num_buckets=2)
    stats.full_frequency[1:] = [60, 3, 4, 12]  # train counts (zero here) must not matter
    ranks = np.array([0, 3, 1, 4])
    targets = np.array([1, 2, 3, 4])
    s = summarize(ranks, targets, [2], 4, stats)
    pop = s["by_popularity"]
    assert list(pop) == ["1-4", "5-9", "10-19", "20-49", "50+"]
    assert pop["1-4"]["users"] == 2 and pop["1-4"]["HR@2"] == pytest.approx(0.5)
    assert pop["10-19"]["users"] == 1 and pop["10-19"]["HR@2"] == 0.0
    assert pop["50+"]["NDCG@2"] == 1.0
    assert pop["5-9"]["users"] == 0 and math.isnan(pop["5-9"]["HR@2"])


# --------------------------------------------------------------------------- ranking
# One user, items 1..6 scored [_, 0.9, 0.5, 0.7, -0.2, 0.1, -0.4], history {1, 3}.
SCORES = np.array([[5.0, 0.9, 0.5, 0.7, -0.2, 0.1, -0.4]], dtype=np.float32)


@pytest.mark.parametrize(
    "mode,target,expected",
    [
        ("none", 2, 2),  # items 1 and 3 above; padding column never counts
        ("remove", 2, 0),  # 1 and 3 removed
        ("zero", 2, 0),
        ("zero", 4, 4),  # -0.2: above are 2 (0.5), 5 (0.1) and the zeroed 1 and 3
        ("remove", 4, 2),  # 2 and 5 above
        ("remove", 3, 6),  # repeat target removed: rank N, a miss
        ("zero", 3, 3),  # repeat target scored 0: 2 and 5 above, 1 tied at 0 with a smaller id
        ("none", 3, 1),
    ],
)
def test_history_handling_hand_computed(mode, target, expected):
    es = indexed_eval_set(1, [target], [[1, 3]])
    res = evaluate(table_score_fn(SCORES), es, None, EvalConfig(ks=[1, 3], history_handling=mode), main_metric="NDCG@3")
    assert res.ranks.tolist() == [expected]


def test_constant_scores_tie_rule():
    # All items tie: rank = number of rankable items with a smaller id.
    scores = np.ones((3, 8), dtype=np.float32)
    es = indexed_eval_set(3, [5, 5, 1], [[], [2, 7], []])
    res = evaluate(table_score_fn(scores), es, None, EvalConfig(ks=[2]), main_metric="HR@2")
    assert res.ranks.tolist() == [4, 3, 0]
    assert res.topk.tolist() == [[1, 2], [1, 3], [1, 2]]


@pytest.mark.parametrize("mode", ["remove", "zero", "none"])
def test_matches_brute_force_with_ties(mode):
    rng = np.random.default_rng(1)
    U, n = 40, 30
    scores = rng.integers(-3, 4, size=(U, n + 1)).astype(np.float32)  # many exact ties and zeros
    scores[3, 5] = np.nan
    scores[4, :] = np.nan
    seen = [sorted(rng.choice(np.arange(1, n + 1), size=rng.integers(0, 8), replace=False).tolist()) for _ in range(U)]
    targets = rng.integers(1, n + 1, size=U)
    targets[0] = seen[0][0] if seen[0] else 1
    targets[3] = 5
    es = indexed_eval_set(U, targets, seen)
    cfg = EvalConfig(ks=[1, 5, 10], history_handling=mode, batch_size=7)
    res = evaluate(table_score_fn(scores), es, None, cfg)
    ref_ranks, ref_top = reference(scores, targets, seen, mode, 10)
    np.testing.assert_array_equal(res.ranks, ref_ranks)
    np.testing.assert_array_equal(res.topk, ref_top)
    assert res.ranks[3] == n and res.ranks[4] == n  # NaN targets miss
    # rank < K  <=>  target in the top-K list
    for k in (1, 5, 10):
        in_top = (res.topk[:, :k] == targets[:, None]).any(1)
        np.testing.assert_array_equal(in_top, res.ranks < k)


def test_continuous_scores_match_brute_force_and_chunking_invariance():
    rng = np.random.default_rng(2)
    U, n = 50, 200
    scores = rng.normal(size=(U, n + 1)).astype(np.float32)
    seen = [rng.choice(np.arange(1, n + 1), size=5, replace=False).tolist() for _ in range(U)]
    targets = rng.integers(1, n + 1, size=U)
    es = indexed_eval_set(U, targets, seen)
    results = [evaluate(table_score_fn(scores), es, None, EvalConfig(batch_size=bs)) for bs in (1, 13, 4096, 0)]
    ref_ranks, ref_top = reference(scores, targets, seen, "remove", 20)
    for r in results:
        np.testing.assert_array_equal(r.ranks, ref_ranks)
        np.testing.assert_array_equal(r.topk, ref_top)
        assert r.overall == results[0].overall and r.coverage == results[0].coverage


@pytest.mark.parametrize("mode", ["remove", "zero", "none"])
def test_ranks_only_evaluation_gives_the_same_hr_ndcg_without_top_k(mode):
    rng = np.random.default_rng(5)
    U, n = 60, 150
    scores = np.round(rng.normal(size=(U, n + 1)), 1).astype(np.float32)  # rounded: many ties
    seen = [rng.choice(np.arange(1, n + 1), size=4, replace=False).tolist() for _ in range(U)]
    targets = rng.integers(1, n + 1, size=U)
    es = indexed_eval_set(U, targets, seen)
    stats = make_stats(n, [1 + b % 3 for b in range(n)], [b % 3 for b in range(n)], list(range(1, 16)), num_buckets=3)
    cfg = EvalConfig(ks=[5, 10], history_handling=mode, batch_size=17)
    full = evaluate(table_score_fn(scores), es, stats, cfg)
    ranks_only = evaluate(table_score_fn(scores), es, stats, cfg, with_topk=False)
    np.testing.assert_array_equal(ranks_only.ranks, full.ranks)
    assert ranks_only.overall == full.overall and ranks_only.by_bucket == full.by_bucket
    assert ranks_only.head_tail == full.head_tail and ranks_only.main() == full.main()
    assert ranks_only.topk is None and ranks_only.coverage == {} and full.coverage


def test_padding_column_ignored_and_scores_not_modified():
    scores = torch.tensor([[100.0, 1.0, 2.0, 3.0, 4.0]])
    before = scores.clone()
    es = indexed_eval_set(1, [4], [[2]])
    res = evaluate(lambda h: scores, es, None, EvalConfig(ks=[1]), main_metric="HR@1")
    assert res.ranks.tolist() == [0] and res.topk.tolist() == [[4]]
    assert torch.equal(scores, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_score_dtypes(dtype):
    scores = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]], dtype=dtype)
    es = indexed_eval_set(1, [2], [[]])
    res = evaluate(lambda h: scores, es, None, EvalConfig(ks=[2]), main_metric="HR@2")
    assert res.ranks.tolist() == [2] and res.topk.tolist() == [[4, 3]]


def test_evaluate_with_item_stats_and_real_score_fn():
    rng = np.random.default_rng(3)
    n, d, U = 12, 4, 9
    table = torch.as_tensor(rng.normal(size=(n + 1, d)), dtype=torch.float32)

    def score_fn(h: torch.Tensor) -> torch.Tensor:
        return table[h].mean(1) @ table.T

    hist = [rng.integers(1, n + 1, size=3).tolist() for _ in range(U)]
    targets = rng.integers(1, n + 1, size=U).tolist()
    es = make_eval_set(hist, targets)
    stats = make_stats(n, [1] * 4 + [2] * 4 + [3] * 4, [0] * 4 + [1] * 4 + [2] * 4, [1, 2], num_buckets=3)
    res = evaluate(score_fn, es, stats, EvalConfig(ks=[1, 5, 10]), progress=True)
    assert sorted(res.by_bucket) == [1, 2, 3]
    assert sum(r["users"] for r in res.by_bucket.values()) == U
    assert sum(r["users"] for r in res.by_group.values()) == U
    assert res.head_tail["head"]["users"] + res.head_tail["tail"]["users"] == U
    assert set(res.coverage) == {f"{c}@{k}" for c in ("Coverage", "TailCoverage") for k in (1, 5, 10)}
    assert res.main() == res.overall["NDCG@10"]
    np.testing.assert_array_equal(res.targets, targets)


def test_errors():
    scores = np.zeros((1, 5), dtype=np.float32)
    es = indexed_eval_set(1, [2], [[]])
    with pytest.raises(ValueError, match="exceeds the catalogue"):
        evaluate(table_score_fn(scores), es, None, EvalConfig())
    with pytest.raises(ValueError, match="target ids"):
        evaluate(
            table_score_fn(scores),
            indexed_eval_set(1, [5], [[]]),
            None,
            EvalConfig(ks=[1]),
            main_metric="HR@1",
        )
    stats = make_stats(6, [1] * 6, [0] * 6, [], 1)
    with pytest.raises(ValueError, match="columns"):
        evaluate(table_score_fn(scores), es, stats, EvalConfig(ks=[1]), main_metric="HR@1")


def test_config_validation():
    assert EvalConfig(ks=[20, 5, 10, 5]).ks == [5, 10, 20]
    cfg = from_dict(EvalConfig, {"ks": [10], "history_handling": "zero"})
    assert cfg.history_handling == "zero"
    with pytest.raises(ConfigError):
        from_dict(EvalConfig, {"histroy_handling": "zero"})
    with pytest.raises(ConfigError):
        from_dict(EvalConfig, {"history_handling": "drop"})
    assert EvalConfig().batch_size == 0  # chunk size from the free memory
    for bad in ({"batch_size": -1}, {"ks": []}):
        with pytest.raises(ValueError):
            EvalConfig(**bad)


def test_main_metric_validation():
    check_metric_name("tail/NDCG@10", [10])
    check_metric_name("bucket3/HR@5", [5, 10])
    for name, ks, msg in (
        ("NDCG@10", [5], "K=10 is not among ks"),
        ("nowhere/NDCG@10", [10], "unknown group 'nowhere'"),
        ("tail/Coverage@10", [10], "only HR and NDCG are reported per group"),
    ):
        with pytest.raises(ValueError, match=msg):
            check_metric_name(name, ks)
    es = indexed_eval_set(1, [2], [[]])
    with pytest.raises(ValueError, match="K=10 is not among ks"):
        evaluate(table_score_fn(np.zeros((1, 11), np.float32)), es, None, EvalConfig(ks=[5]), main_metric="NDCG@10")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(4)
    U, n = 30, 100
    scores = rng.integers(-2, 3, size=(U, n + 1)).astype(np.float32)
    seen = [rng.choice(np.arange(1, n + 1), size=4, replace=False).tolist() for _ in range(U)]
    es = indexed_eval_set(U, rng.integers(1, n + 1, size=U), seen)
    a = evaluate(table_score_fn(scores), es, None, EvalConfig(), device="cpu")
    b = evaluate(table_score_fn(scores), es, None, EvalConfig(), device="cuda")
    np.testing.assert_array_equal(a.ranks, b.ranks)
    np.testing.assert_array_equal(a.topk, b.topk)


# --------------------------------------------------------------------------- result I/O
def small_result() -> EvalResult:
    stats = make_stats(4, [1, 1, 2, 2], [0, 0, 0, 2], [1], num_buckets=2)
    scores = np.array([[0, 4, 3, 2, 1], [0, 1, 2, 3, 4], [0, 4, 3, 2, 1]], dtype=np.float32)
    es = indexed_eval_set(3, [1, 2, 4], [[], [4], []])
    return evaluate(table_score_fn(scores), es, stats, EvalConfig(ks=[1, 2]), main_metric="NDCG@2")


def test_result_json_round_trip_and_main(tmp_path):
    res = small_result()
    assert res.ranks.tolist() == [0, 1, 3]
    assert math.isnan(res.by_group["median"]["NDCG@2"])
    path = tmp_path / "sub" / "result.json"
    res.to_json(path)
    assert not list(path.parent.glob(".*tmp*"))
    back = EvalResult.from_json(path)
    assert back.overall == res.overall and back.coverage == res.coverage
    assert back.by_bucket == res.by_bucket and back.head_tail == res.head_tail
    assert back.by_group["median"]["users"] == 0 and math.isnan(back.by_group["median"]["NDCG@2"])
    np.testing.assert_array_equal(back.ranks, res.ranks)
    np.testing.assert_array_equal(back.targets, res.targets)
    assert back.topk is None and back.main() == res.main() == res.overall["NDCG@2"]
    assert res.main("HR@1") == pytest.approx(1 / 3)
    assert res.main("head/HR@1") == 1.0
    assert res.main("bucket2/HR@2") == 0.0
    assert res.main("Coverage@2") == pytest.approx(3 / 4)
    assert res.main("cold/users") == 1
    assert back.by_popularity.keys() == res.by_popularity.keys()
    assert res.main("pop1-4/users") == res.by_popularity["1-4"]["users"]
    with pytest.raises(KeyError):
        res.main("NDCG@5")
    assert "per_user" not in res.to_dict(per_user=False)


def test_reports_render():
    res = small_result()
    console = Console(record=True, width=200)
    print_result(res, console, title="test run")
    text = console.export_text()
    for s in (
        "test run",
        "NDCG@2",
        "NDCG",
        "warm",
        "cold",
        "tail",
        "Coverage",
        "By target bucket",
        "3 users",
    ):
        assert s in text
    console = Console(record=True, width=200)
    print_runs({"single": res, "seeds": [res.flat_metrics(), {**res.flat_metrics(), "NDCG@2": 0.0}]}, console=console)
    text = console.export_text()
    assert "±" in text and "single" in text and "seeds" in text


def test_scores_in_chunks_of_at_most_batch_size():
    """score_fn sees every user exactly once, in order, in chunks of at most batch_size rows."""
    rng = np.random.default_rng(3)
    U, n = 40, 30
    scores = rng.normal(size=(U, n + 1)).astype(np.float32)
    es = indexed_eval_set(U, rng.integers(1, n + 1, size=U), [[] for _ in range(U)])
    inner = table_score_fn(scores)
    seen_rows: list[list[int]] = []

    def score_fn(h: torch.Tensor) -> torch.Tensor:
        seen_rows.append(h[:, 0].tolist())
        return inner(h)

    evaluate(score_fn, es, None, EvalConfig(batch_size=7))
    assert [len(r) for r in seen_rows] == [7, 7, 7, 7, 7, 5]
    assert [u for r in seen_rows for u in r] == list(range(U))


@pytest.mark.slow
def test_prime_pantry_sized_evaluation():
    """All 12,871 users over 8,347 items with a d=64 dot-product score_fn (run with -m slow).

    Scored in chunks of at most ``batch_size`` users (bounded memory), every user once, and the
    ranks of a sample of users equal the brute-force reference. Its speed is measured by
    benchmarks/bench_evaluate.py, not asserted here.
    """
    U, n, L, d = 12871, 8347, 20, 64
    rng = np.random.default_rng(0)
    lens = rng.integers(4, 23, size=U)
    seen = [rng.integers(1, n + 1, size=k) for k in lens]
    H = np.zeros((U, L), dtype=np.int64)
    for i, s in enumerate(seen):
        H[i, L - min(L, len(s)) :] = s[-L:]
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    targets = rng.integers(1, n + 1, size=U)
    es = EvalSet(np.arange(U), H, targets, indptr, np.concatenate(seen))
    # Small integers: every score is an exact float32 integer (many ties), whatever the chunking.
    table = torch.randint(-3, 4, (n + 1, d), generator=torch.Generator().manual_seed(0)).float()
    chunk_rows: list[int] = []

    def score_fn(h: torch.Tensor) -> torch.Tensor:
        chunk_rows.append(h.shape[0])
        return table[h].sum(1) @ table.T

    cfg = EvalConfig(batch_size=2048)
    res = evaluate(score_fn, es, None, cfg)
    assert res.num_users == U and res.num_items == n and res.ranks.shape == (U,)
    assert max(chunk_rows) <= cfg.batch_size and sum(chunk_rows) == U
    assert len(chunk_rows) == math.ceil(U / cfg.batch_size)
    sample = rng.choice(U, size=64, replace=False)
    with torch.no_grad():
        sample_scores = score_fn(torch.from_numpy(H[sample])).numpy()
    ref_ranks, ref_top = reference(sample_scores, targets[sample], [seen[u] for u in sample], "remove", max(cfg.ks))
    np.testing.assert_array_equal(res.ranks[sample], ref_ranks)
    np.testing.assert_array_equal(res.topk[sample], ref_top)


def test_auto_chunk_size_follows_the_free_memory():
    from padrec.evaluation.ranking import auto_chunk_users

    cpu = torch.device("cpu")
    assert auto_chunk_users(16_859, cpu, free_bytes=20 << 30) == 2048  # Games: the cap
    big = auto_chunk_users(1_000_000, cpu, free_bytes=20 << 30)
    assert 250 < big < 400 and big * 1_000_001 * 16 <= 0.25 * (20 << 30)
    assert auto_chunk_users(1_000_000, cpu, free_bytes=10 << 30) < big
    assert auto_chunk_users(10**9, cpu, free_bytes=1 << 20) == 1  # never 0
    assert auto_chunk_users(8_347, cpu) >= 1  # measured on this machine


def test_auto_chunks_cover_every_user_once():
    rng = np.random.default_rng(5)
    U, n = 300, 20
    scores = rng.normal(size=(U, n + 1)).astype(np.float32)
    es = indexed_eval_set(U, rng.integers(1, n + 1, size=U), [[] for _ in range(U)])
    inner = table_score_fn(scores)
    rows: list[int] = []

    def score_fn(h: torch.Tensor) -> torch.Tensor:
        rows.append(len(h))
        return inner(h)

    r = evaluate(score_fn, es, None, EvalConfig(batch_size=0))
    assert rows[0] == 64 and sum(rows) == U and len(r.ranks) == U  # a first chunk learns N, then the auto size


def test_wide_catalogue_top_k_filter_matches_brute_force(monkeypatch):
    """Rows of 70,000 items take the threshold-filtered top-K path (switched on from 65,536
    columns here); ties, -inf and a row whose candidates overflow the filter (massive ties)
    must give the brute-force ranks and lists."""
    import padrec.evaluation.ranking as ranking

    monkeypatch.setattr(ranking, "_FILTER_MIN_COLUMNS", 1 << 16)
    rng = np.random.default_rng(11)
    U, n = 7, 70_000
    assert n + 1 >= ranking._FILTER_MIN_COLUMNS
    scores = rng.normal(size=(U, n + 1)).astype(np.float32)
    scores[1, 100:130] = 9.0  # 30 tied scores across the top-20 boundary
    scores[2, :] = -np.inf
    scores[2, [5, 70, 69_999]] = [1.0, 2.0, 1.0]  # fewer finite scores than K
    scores[3] = np.round(scores[3])  # integer scores: ties everywhere, filter overflows
    scores[4, 69_990:] = 50.0  # the top sits in the padded last slice
    scores[5, ::2] = np.nan
    seen = [rng.choice(np.arange(1, n + 1), size=30, replace=False).tolist() for _ in range(U)]
    targets = np.array([7, 115, 70, 3, 69_995, 1_001, 42])
    es = indexed_eval_set(U, targets, seen)
    for mode in ("remove", "zero"):
        r = evaluate(table_score_fn(scores), es, None, EvalConfig(ks=[10, 20], history_handling=mode))
        ref_ranks, ref_top = reference(scores, targets, seen, mode, 20)
        np.testing.assert_array_equal(r.ranks, ref_ranks)
        np.testing.assert_array_equal(r.topk, ref_top)
