"""Tests of padrec.evaluation.significance: seed aggregation and paired t-tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from padrec.evaluation import (
    EvalResult,
    aggregate,
    compare_runs,
    paired_ttest,
    per_user_ndcg,
    per_user_paired_test,
    print_comparison,
)


def result_with_ranks(ranks: list[int], targets: list[int] | None = None) -> EvalResult:
    """An EvalResult carrying only what the per-user tests read."""
    n = len(ranks)
    return EvalResult(
        overall={},
        by_bucket={},
        by_group={},
        head_tail={},
        coverage={},
        num_users=n,
        num_items=100,
        ks=[10],
        history_handling="remove",
        main_metric="NDCG@10",
        users=np.arange(n, dtype=np.int64),
        targets=np.asarray(targets if targets is not None else [1] * n, dtype=np.int64),
        ranks=np.asarray(ranks, dtype=np.int64),
    )


def test_aggregate_mean_and_sample_std():
    runs = [{"NDCG@10": 1.0, "HR@10": 2.0}, {"NDCG@10": 3.0, "HR@10": 2.0}, {"NDCG@10": 5.0}]
    agg = aggregate(runs)
    assert list(agg) == ["NDCG@10"]  # HR@10 is missing from one run
    mean, std = agg["NDCG@10"]
    assert mean == pytest.approx(3.0)
    assert std == pytest.approx(2.0)  # sqrt(((1-3)^2 + 0 + (5-3)^2) / (3-1))
    single = aggregate([{"NDCG@10": 0.5}])
    assert single["NDCG@10"][0] == 0.5 and math.isnan(single["NDCG@10"][1])
    assert aggregate([]) == {}


def test_aggregate_accepts_results():
    r = result_with_ranks([0, 20])
    r.overall = {"NDCG@10": 0.5}
    r.coverage = {"Coverage@10": 0.1}
    agg = aggregate([r, r])
    assert agg["NDCG@10"] == (0.5, 0.0) and agg["Coverage@10"] == (0.1, 0.0)


def test_paired_ttest_hand_computed():
    a = [1.0, 2.0, 3.0, 4.0]
    b = [0.0, 2.0, 1.0, 3.0]
    # diffs 1, 0, 2, 1: mean 1, sample sd sqrt(2/3), t = 1 / (sqrt(2/3) / 2)
    t_expected = 1.0 / (math.sqrt(2 / 3) / 2)
    res = paired_ttest(a, b)
    assert res.t == pytest.approx(t_expected)
    assert res.p == pytest.approx(2 * stats.t.sf(t_expected, df=3))
    assert res.mean_diff == pytest.approx(1.0)
    assert res.lift == pytest.approx(1.0 / 1.5)
    assert res.n == 4
    rev = paired_ttest(b, a)
    assert rev.t == pytest.approx(-t_expected) and rev.p == pytest.approx(res.p)


def test_paired_ttest_degenerate_cases():
    same = paired_ttest([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert (same.t, same.p, same.mean_diff, same.lift) == (0.0, 1.0, 0.0, 0.0)
    shifted = paired_ttest([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])  # exact constant difference
    assert shifted.t == math.inf and shifted.p == 0.0
    one = paired_ttest([0.2], [0.1])
    assert math.isnan(one.t) and math.isnan(one.p) and one.lift == pytest.approx(1.0)
    zero_base = paired_ttest([0.1, 0.3], [0.0, 0.0])
    assert math.isnan(zero_base.lift)
    with pytest.raises(ValueError):
        paired_ttest([1.0, 2.0], [1.0])


def test_per_user_paired_test():
    a = result_with_ranks([0, 1, 5, 30, 2])
    b = result_with_ranks([3, 1, 50, 30, 0])
    res = per_user_paired_test(a, b, "NDCG@10")
    ref = stats.ttest_rel(per_user_ndcg(a.ranks, 10), per_user_ndcg(b.ranks, 10))
    assert res.t == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    hr = per_user_paired_test(a, b, "HR@10")
    # per-user hits: a 1,1,1,0,1 / b 1,1,0,0,1 -> diffs 0,0,1,0,0
    assert hr.mean_diff == pytest.approx(0.2) and hr.lift == pytest.approx(0.2 / 0.6)
    masked = per_user_paired_test(a, b, "HR@10", mask=np.array([True, True, False, True, True]))
    assert masked.n == 4 and masked.p == 1.0
    with pytest.raises(ValueError, match="same users"):
        per_user_paired_test(a, result_with_ranks([0, 1, 5, 30, 2], targets=[2] * 5), "NDCG@10")


def test_compare_runs_and_table():
    runs_a = [
        {"HR@10": 0.11, "NDCG@10": 0.061, "Coverage@10": 0.3},
        {"HR@10": 0.12, "NDCG@10": 0.064, "Coverage@10": 0.3},
    ]
    runs_b = [
        {"HR@10": 0.10, "NDCG@10": 0.060, "Coverage@10": 0.2},
        {"HR@10": 0.10, "NDCG@10": 0.061, "Coverage@10": 0.2},
    ]
    rows = compare_runs(runs_a, runs_b)
    assert [r.metric for r in rows] == ["HR@10", "NDCG@10"]
    hr = rows[0]
    assert hr.mean_a == pytest.approx(0.115) and hr.std_a == pytest.approx(np.std([0.11, 0.12], ddof=1))
    assert hr.mean_b == pytest.approx(0.10) and hr.std_b == 0.0
    assert hr.test.lift == pytest.approx(0.15)
    cov = compare_runs(runs_a, runs_b, metrics=["Coverage@10"])[0]
    assert cov.test.p == 0.0
    with pytest.raises(ValueError):
        compare_runs(runs_a, runs_b[:1])
    with pytest.raises(KeyError):
        compare_runs(runs_a, runs_b, metrics=["NDCG@20"])
    console = Console(record=True, width=160)
    print_comparison(runs_a, runs_b, "PAD", "SASRec", metrics=["HR@10", "Coverage@10"], console=console)
    text = console.export_text()
    assert "PAD vs SASRec" in text and "+15.00%" in text and "+50.00%" in text and "0.1150 ± 0.0071" in text
    assert "0 *" in text  # Coverage: p = 0 < alpha, starred


def test_user_confidence_intervals_are_student_t_over_users():
    from padrec.evaluation.significance import user_confidence_intervals

    ranks = [0, 3, 12, 50, 1, 9, 100, 2]
    ci = user_confidence_intervals(result_with_ranks(ranks), level=0.9)
    hits = np.array([r < 10 for r in ranks], dtype=float)
    lo, hi = stats.t.interval(0.9, len(hits) - 1, loc=hits.mean(), scale=stats.sem(hits))
    assert ci["HR@10"] == pytest.approx((lo, hi))
    nd = per_user_ndcg(np.array(ranks), 10)
    assert ci["NDCG@10"] == pytest.approx(stats.t.interval(0.9, len(nd) - 1, loc=nd.mean(), scale=stats.sem(nd)))
    assert all(math.isnan(x) for x in user_confidence_intervals(result_with_ranks([4]))["HR@10"])


def test_eval_set_sample_is_fixed_sorted_and_whole_when_not_smaller(toy_dataset):
    from padrec.data import make_split
    from padrec.data.protocols import SplitConfig

    test = make_split(toy_dataset, SplitConfig(max_len=10)).test
    a, b = test.sample(30, seed=4), test.sample(30, seed=4)
    assert len(a) == 30 and np.array_equal(a.users, b.users) and np.all(np.diff(a.users) > 0)
    assert not np.array_equal(a.users, test.sample(30, seed=5).users)
    idx = np.searchsorted(test.users, a.users)
    assert np.array_equal(a.targets, test.targets[idx]) and np.array_equal(a.histories, test.histories[idx])
    assert test.sample(0, 1) is test and test.sample(len(test), 1) is test
