"""Readable rich tables of evaluation results.

- :func:`print_result`: one :class:`EvalResult` as an overall table, a target-group table
  (warm/median/cold, head/tail) and a compact per-bucket table.
- :func:`print_runs`: several runs side by side; a run given as a list (e.g. seeds) is shown
  as mean ± std.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from padrec.evaluation.metrics import parse_metric
from padrec.evaluation.result import EvalResult
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
    overall = Table(
        title=title or "Evaluation",
        caption=f"{result.num_users} users · {result.num_items} items · history {result.history_handling}",
    )
    overall.add_column("K", justify="right")
    kinds = [c for c in ("HR", "NDCG") if any(m.startswith(c + "@") for m in result.overall)]
    kinds += [c for c in ("Coverage", "TailCoverage") if any(m.startswith(c + "@") for m in result.coverage)]
    for c in kinds:
        overall.add_column(c, justify="right")
    values = {**result.overall, **result.coverage}
    main_k = _main_k(result)
    for k in result.ks:
        cells = [_fmt(values.get(f"{c}@{k}", math.nan)) for c in kinds]
        style = "bold" if k == main_k else None
        overall.add_row(str(k), *cells, style=style)
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

    if result.by_popularity:
        k = _main_k(result)
        t = Table(title="By target popularity (interactions over whole sequences)")
        for c in ("popularity", "users", f"HR@{k}", f"NDCG@{k}"):
            t.add_column(c, justify="right")
        for name, row in result.by_popularity.items():
            t.add_row(name, str(int(row["users"])), _fmt(row[f"HR@{k}"]), _fmt(row[f"NDCG@{k}"]))
        tables.append(t)

    if result.by_bucket:
        k = _main_k(result)
        t = Table(title="By target bucket (1 = warmest)")
        for c in ("bucket", "users", f"HR@{k}", f"NDCG@{k}"):
            t.add_column(c, justify="right")
        for b, row in result.by_bucket.items():
            t.add_row(str(b), str(int(row["users"])), _fmt(row[f"HR@{k}"]), _fmt(row[f"NDCG@{k}"]))
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
