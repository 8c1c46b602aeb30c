"""Seed aggregation and paired significance tests.

- :func:`aggregate`: mean and sample standard deviation (ddof=1) of each metric over runs.
- :func:`paired_ttest`: paired t-test of two configurations over matched runs (seed i of A
  against seed i of B), ``scipy.stats.ttest_rel``.
- :func:`per_user_paired_test`: paired t-test over users of one run each (same eval set),
  on per-user HR@K or NDCG@K; for single-seed comparisons.
- :func:`compare_runs` / :func:`print_comparison`: "A vs B" table of mean ± std, lift and p.

Direction everywhere: differences are ``A − B`` and the lift is ``(mean A − mean B) / mean B``,
so B plays the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from padrec.evaluation.metrics import per_user_metric
from padrec.evaluation.result import EvalResult

RunMetrics = Mapping[str, float] | EvalResult


def _flat(run: RunMetrics) -> Mapping[str, float]:
    return run.flat_metrics() if isinstance(run, EvalResult) else run


def aggregate(results: Sequence[RunMetrics]) -> dict[str, tuple[float, float]]:
    """Mean and sample std (ddof=1) of every metric present in all runs.

    Args:
        results: one metrics dict per run (e.g. per seed), or :class:`EvalResult` objects
            (their :meth:`~EvalResult.flat_metrics`).
    Returns:
        ``{metric: (mean, std)}`` in the order of the first run; std is NaN for one run.
    """
    runs = [_flat(r) for r in results]
    if not runs:
        return {}
    common = [m for m in runs[0] if all(m in r for r in runs[1:])]
    out = {}
    for m in common:
        x = np.asarray([float(r[m]) for r in runs], dtype=np.float64)
        std = float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")
        out[m] = (float(np.mean(x)), std)
    return out


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired comparison of A against B.

    Attributes:
        t: t statistic of ``A − B`` (positive when A is higher).
        p: two-sided p-value.
        mean_diff: mean of ``A − B``.
        lift: ``mean_diff / mean(B)``; NaN when mean(B) is 0.
        n: number of pairs.
    """

    t: float
    p: float
    mean_diff: float
    lift: float
    n: int


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Paired t-test of ``a`` against ``b`` (same length, pair i = run/seed/user i).

    Uses ``scipy.stats.ttest_rel`` (two-sided). Degenerate cases are defined rather than left
    to warnings: fewer than 2 pairs gives t = p = NaN; identical pairs give t = 0, p = 1; a
    constant non-zero difference gives t = ±inf, p = 0.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired_ttest needs two 1-D sequences of equal length, got {x.shape} and {y.shape}")
    n = len(x)
    diff = x - y
    mean_diff = float(diff.mean()) if n else float("nan")
    mean_b = float(y.mean()) if n else float("nan")
    lift = mean_diff / mean_b if n and mean_b != 0 else float("nan")
    if n < 2:
        return PairedTest(float("nan"), float("nan"), mean_diff, lift, n)
    if np.all(diff == diff[0]):
        if diff[0] == 0:
            return PairedTest(0.0, 1.0, mean_diff, lift, n)
        return PairedTest(math.copysign(math.inf, diff[0]), 0.0, mean_diff, lift, n)
    res = stats.ttest_rel(x, y)
    return PairedTest(float(res.statistic), float(res.pvalue), mean_diff, lift, n)


def per_user_paired_test(
    result_a: EvalResult, result_b: EvalResult, metric: str = "NDCG@10", mask: np.ndarray | None = None
) -> PairedTest:
    """Paired t-test over users of two results on the same eval set.

    Args:
        result_a, result_b: results with per-user arrays for the same users and targets.
        metric: ``HR@K`` or ``NDCG@K`` (per-user values from the ranks).
        mask: optional (U,) bool selecting users (e.g. tail targets).
    """
    if not np.array_equal(result_a.users, result_b.users) or not np.array_equal(result_a.targets, result_b.targets):
        raise ValueError("per-user test needs two results on the same users and targets")
    if len(result_a.ranks) == 0:
        raise ValueError("results carry no per-user ranks (written without per_user?)")
    a = per_user_metric(result_a.ranks, metric)
    b = per_user_metric(result_b.ranks, metric)
    if mask is not None:
        a, b = a[mask], b[mask]
    return paired_ttest(a, b)


@dataclass(frozen=True)
class ComparisonRow:
    """One metric of an A-vs-B comparison over matched runs."""

    metric: str
    mean_a: float
    std_a: float
    mean_b: float
    std_b: float
    test: PairedTest


def compare_runs(
    runs_a: Sequence[RunMetrics], runs_b: Sequence[RunMetrics], metrics: Sequence[str] | None = None
) -> list[ComparisonRow]:
    """Compare configuration A with baseline B over matched runs (run i of A with run i of B).

    Args:
        runs_a, runs_b: equally many metric dicts or :class:`EvalResult` objects.
        metrics: which metrics; default every overall HR/NDCG metric present in all runs
            (or every common metric when the runs are plain dicts without them).
    """
    if len(runs_a) != len(runs_b):
        raise ValueError(f"paired comparison needs as many runs of A as of B, got {len(runs_a)} and {len(runs_b)}")
    fa = [_flat(r) for r in runs_a]
    fb = [_flat(r) for r in runs_b]
    agg_a, agg_b = aggregate(fa), aggregate(fb)
    if metrics is None:
        common = [m for m in agg_a if m in agg_b]
        ranking = [m for m in common if m.startswith(("HR@", "NDCG@"))]
        metrics = ranking or common
    rows = []
    for m in metrics:
        if m not in agg_a or m not in agg_b:
            raise KeyError(f"metric {m!r} is missing from some runs")
        test = paired_ttest([r[m] for r in fa], [r[m] for r in fb])
        rows.append(ComparisonRow(m, *agg_a[m], *agg_b[m], test))
    return rows


def _fmt_mean_std(mean: float, std: float) -> str:
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def print_comparison(
    runs_a: Sequence[RunMetrics],
    runs_b: Sequence[RunMetrics],
    name_a: str = "A",
    name_b: str = "B",
    metrics: Sequence[str] | None = None,
    console=None,
    alpha: float = 0.05,
) -> list[ComparisonRow]:
    """Print "``name_a`` vs ``name_b``": mean ± std of each, lift of A over B and the paired p.

    p-values below ``alpha`` are starred. Returns the rows it printed.
    """
    from rich.console import Console
    from rich.table import Table

    rows = compare_runs(runs_a, runs_b, metrics)
    table = Table(title=f"{name_a} vs {name_b} ({len(runs_a)} paired runs)")
    table.add_column("metric")
    table.add_column(name_a, justify="right")
    table.add_column(name_b, justify="right")
    table.add_column("lift", justify="right")
    table.add_column("p", justify="right")
    for r in rows:
        lift = "–" if math.isnan(r.test.lift) else f"{r.test.lift:+.2%}"
        p = "–" if math.isnan(r.test.p) else f"{r.test.p:.3g}" + (" *" if r.test.p < alpha else "")
        table.add_row(r.metric, _fmt_mean_std(r.mean_a, r.std_a), _fmt_mean_std(r.mean_b, r.std_b), lift, p)
    (console or Console()).print(table)
    return rows


def user_confidence_intervals(
    result: EvalResult, metrics: Sequence[str] | None = None, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Confidence intervals of overall HR@K / NDCG@K over the evaluated users (Student's t on
    the per-user values): how far a figure measured on a sample of users may be from the
    figure on all of them.

    Args:
        result: one evaluation (its per-user ranks).
        metrics: names such as ``NDCG@10``; default every HR@K and NDCG@K of ``result``.
        level: coverage of each interval.
    Returns:
        ``{metric: (low, high)}``; a single user gives ``(nan, nan)``.
    """
    names = list(metrics) if metrics is not None else [f"{m}@{k}" for m in ("HR", "NDCG") for k in result.ks]
    return {name: mean_confidence_interval(per_user_metric(result.ranks, name), level) for name in names}


def mean_confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (n,); ``(nan, nan)`` for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return (mean - half, mean + half)
