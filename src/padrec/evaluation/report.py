"""Readable rich tables of evaluation results.

- :func:`print_result`: one :class:`EvalResult` as an overall table, a target-group table
  (warm/median/cold, head/tail) and a compact per-bucket table.
- :func:`print_runs`: several runs side by side; a run given as a list (e.g. seeds) is shown
  as mean ± std.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from padrec.evaluation.metrics import parse_metric
from padrec.evaluation.ranking import EvalResult
from padrec.evaluation.significance import aggregate


def _fmt(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"


def _main_k(result: EvalResult) -> int:
    try:
        return parse_metric(result.main_metric.rpartition("/")[2])[1]
    except ValueError:
        return result.ks[len(result.ks) // 2]


def result_tables(result: EvalResult, title: str | None = None) -> list[Table]:
    """The tables :func:`print_result` prints (for callers that lay them out themselves)."""
    tables = []
    head = title or "Evaluation"
    overall = Table(
        title=f"{head}: {result.num_users} users, {result.num_items} items, history {result.history_handling}"
    )
    cols = list(result.overall) + list(result.coverage)
    for c in cols:
        overall.add_column(c, justify="right", style="bold" if c == result.main_metric else None)
    overall.add_row(*[_fmt(result.overall.get(c, result.coverage.get(c, math.nan))) for c in cols])
    tables.append(overall)

    groups = {**result.by_group, **result.head_tail}
    if groups:
        t = Table(title="By target group")
        t.add_column("group")
        t.add_column("users", justify="right")
        metric_cols = list(result.overall)
        for c in metric_cols:
            t.add_column(c, justify="right")
        for name, row in groups.items():
            if name == "head":
                t.add_section()
            t.add_row(name, str(int(row["users"])), *[_fmt(row[c]) for c in metric_cols])
        tables.append(t)

    if result.by_bucket:
        k = _main_k(result)
        t = Table(title=f"By frequency bucket of the target (1 = warmest), K = {k}")
        t.add_column("")
        for b in result.by_bucket:
            t.add_column(str(b), justify="right")
        rows = result.by_bucket.values()
        t.add_row("users", *[str(int(r["users"])) for r in rows])
        t.add_row(f"HR@{k}", *[_fmt(r[f"HR@{k}"]) for r in rows])
        t.add_row(f"NDCG@{k}", *[_fmt(r[f"NDCG@{k}"]) for r in rows])
        tables.append(t)
    return tables


def print_result(result: EvalResult, console: Console | None = None, title: str | None = None) -> None:
    """Print ``result``: overall metrics and coverage, target groups, buckets (compact)."""
    console = console or Console()
    for table in result_tables(result, title):
        console.print(table)


RunLike = EvalResult | Mapping[str, float]


def print_runs(
    runs: Mapping[str, RunLike | Sequence[RunLike]],
    metrics: Sequence[str] | None = None,
    console: Console | None = None,
    title: str | None = None,
) -> None:
    """Print one row per named run, one column per metric.

    Args:
        runs: name -> a result / metrics dict, or a list of them (shown as mean ± std, ddof=1).
        metrics: columns; default the overall HR/NDCG metrics of the first run (any name that
            :meth:`EvalResult.flat_metrics` knows, e.g. ``tail/NDCG@10``, works).
    """
    console = console or Console()
    stats = {}
    for name, run in runs.items():
        group = run if isinstance(run, Sequence) and not isinstance(run, (str, bytes)) else [run]
        stats[name] = (aggregate(group), len(group))
    if metrics is None:
        first = next(iter(stats.values()), ({}, 0))[0]
        metrics = [m for m in first if m.startswith(("HR@", "NDCG@"))] or list(first)
    table = Table(title=title or "Results")
    table.add_column("run")
    table.add_column("n", justify="right")
    for m in metrics:
        table.add_column(m, justify="right")
    for name, (agg, n) in stats.items():
        cells = []
        for m in metrics:
            if m not in agg:
                cells.append("–")
            elif n > 1:
                cells.append(f"{_fmt(agg[m][0])} ± {_fmt(agg[m][1])}")
            else:
                cells.append(_fmt(agg[m][0]))
        table.add_row(name, str(n), *cells)
    console.print(table)
