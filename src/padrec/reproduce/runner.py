"""Run every row of a :class:`~padrec.reproduce.tables.Table` and write its report.

Each row trains through the ordinary ``padrec train`` code path (:func:`run_training`), one
run per seed under ``<runs_dir>/<table>/<data>/<row>/seed_S``, so finished phases are reused
and interrupted ones resume. The report (JSON, Markdown, bar plot) gives mean ± std over
seeds of the overall, warm / median / cold, tail and coverage metrics, and the paired t-test
of the best ``method`` row against the best ``baseline`` row (over seeds, or over users when
there is one seed), plus each other row against the best method.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from padrec.reproduce.tables import Row, Table

__all__ = ["COLUMNS", "configs_dir", "row_status", "run_table", "summarize_table"]

#: The report's metric columns (names of :meth:`EvalResult.flat_metrics`).
COLUMNS = (
    "HR@10",
    "NDCG@10",
    "warm/NDCG@10",
    "median/NDCG@10",
    "cold/NDCG@10",
    "tail/HR@10",
    "tail/NDCG@10",
    "Coverage@10",
    "TailCoverage@10",
)
_SHARED_PHASES = ("pretrain", "pretrain_llm", "align")


def configs_dir(explicit: str | Path | None = None) -> Path:
    """The directory of shipped configs: ``explicit``, else ``configs/`` of this checkout."""
    if explicit:
        path = Path(explicit)
    else:
        path = Path(__file__).resolve().parents[3] / "configs"
    if not path.is_dir():
        raise FileNotFoundError(f"configs directory {path} not found; pass --configs DIR (padrec's configs/)")
    return path


def _data_sets(data: str | None) -> list[str]:
    """The data settings of ``--data`` exactly as ``padrec train --data`` makes them (so a row
    and a ``padrec train`` run of the same config and data are the same run)."""
    if not data:
        return []
    from padrec.data.loading import resolve_dataset

    cfg = resolve_dataset(data)
    return [f"data.format={cfg.format}", f"data.name={cfg.name}", f"data.path={cfg.path}"]


def _backbone_sets(backbone: str | None, cfg_dir: Path) -> list[str]:
    """``method_config.backbone`` and that backbone's shipped settings (``configs/<name>.yaml``)."""
    if not backbone:
        return []
    from padrec.config import load_yaml

    own = cfg_dir / f"{backbone}.yaml"
    bcfg = load_yaml(own).get("method_config", {}).get("backbone_config", {}) if own.exists() else {}
    flow = "{" + ", ".join(f"{k}: {v}" for k, v in bcfg.items()) + "}"
    return [f"method_config.backbone={backbone}", f"method_config.backbone_config={flow}"]


def row_status(row: Row, cfg_dir: Path) -> str:
    """``ok``, or why the row cannot run in this padrec (missing config or method)."""
    from padrec.config import load_yaml
    from padrec.methods import METHODS

    path = cfg_dir / row.config
    if not path.exists():
        return f"unavailable: no config {row.config}"
    method = load_yaml(path).get("method", "sequential")
    for item in row.overrides:
        key, _, value = item.partition("=")
        if key == "method":
            method = value
    if method not in METHODS.names():
        return f"unavailable: method {method!r} is not implemented"
    return "ok"


def _row_raw(row: Row, run_dir: Path, cfg_dir: Path, sets: list[str], threads: int) -> dict[str, Any]:
    from padrec.commands.train import build_config_dict

    fixed = {"name": row.name, "output_dir": str(run_dir), "train.progress": False}
    if threads:
        fixed["train.num_threads"] = threads
    return build_config_dict(cfg_dir / row.config, fixed, [*row.overrides, *sets])


def _share_phases(row: Row, base_dir: Path, seeds: list[int]) -> None:
    if not row.reuse_from:
        return
    for s in seeds:
        src, dst = base_dir / row.reuse_from / f"seed_{s}", base_dir / row.name / f"seed_{s}"
        for phase in _SHARED_PHASES:
            if (src / phase / "state.json").exists() and not (dst / phase).exists():
                shutil.copytree(src / phase, dst / phase)


def _kept_only(row_dir: Path, seeds: list[int]) -> bool:
    """Every seed has a results.json but no config.json: results restored by
    ``benchmarks/keep_runs.py``, without the run directory that training would reuse."""
    dirs = [row_dir / f"seed_{s}" for s in seeds]
    return all((d / "results.json").exists() and not (d / "config.json").exists() for d in dirs)


def run_table(
    table: Table,
    *,
    data: str | None = None,
    seeds: list[int] = (1, 2, 3),
    backbone: str | None = None,
    runs_dir: str | Path = "runs/reproduce",
    only: list[str] = (),
    threads: int = 0,
    extra_sets: list[str] = (),
    cfg_dir: str | Path | None = None,
    echo=print,
) -> dict[str, Any]:
    """Train every available row over ``seeds`` and return the report (see module docstring).

    Args:
        table: what to run. data: dataset name for every row (None = each config's own).
        seeds: training seeds. backbone: replace every row's backbone (None = as configured).
        runs_dir: parent of the run directories. only: run just these rows (others that have
            finished earlier are still reported). threads: torch threads (0 = default).
        extra_sets: ``key=value`` overrides for every row. cfg_dir: the configs directory.
        echo: where progress lines go.
    """
    from padrec.commands.train import run_training

    cfg_path = configs_dir(cfg_dir)
    seeds = list(seeds)
    tag = data or "default"
    base_dir = Path(runs_dir) / table.name / (tag if not backbone else f"{tag}_{backbone}")
    sets = [*_data_sets(data), *_backbone_sets(backbone, cfg_path), *extra_sets]
    unknown = sorted(set(only) - {r.name for r in table.rows})
    if unknown:
        raise ValueError(f"--only: table {table.name!r} has no row(s) {unknown}")
    status = {r.name: row_status(r, cfg_path) for r in table.rows}
    kept = {r.name for r in table.rows if _kept_only(base_dir / r.name, seeds)}
    for name in sorted(kept):
        echo(f"{table.name}: {name} reported from kept results (no run directory to resume or check)")
    todo = [r for r in table.rows if status[r.name] == "ok" and (not only or r.name in only) and r.name not in kept]
    results: dict[str, list[dict[str, Any]]] = {}
    durations: list[float] = []
    t_start = time.perf_counter()
    for i, row in enumerate(todo):
        left = ""
        if durations:
            eta = np.mean(durations) * (len(todo) - i)
            left = f", about {eta / 60:.0f} min left"
        echo(
            f"[{i + 1}/{len(todo)}] {table.name}: {row.name} (seeds {','.join(map(str, seeds))}) — "
            f"{(time.perf_counter() - t_start) / 60:.0f} min elapsed{left}"
        )
        _share_phases(row, base_dir, seeds)
        t0 = time.perf_counter()
        results[row.name] = run_training(_row_raw(row, base_dir / row.name, cfg_path, sets, threads), seeds)
        durations.append(time.perf_counter() - t0)
    for row in table.rows:  # rows not run now but finished earlier with these seeds
        if row.name not in results and status[row.name] == "ok":
            found = [base_dir / row.name / f"seed_{s}" / "results.json" for s in seeds]
            if all(p.exists() for p in found):
                from padrec.io import read_json

                results[row.name] = [read_json(p) for p in found]
    report = summarize_table(table, results, seeds)
    report.update(
        {
            "data": data,
            "backbone": backbone,
            "runs_dir": str(base_dir),
            "status": status,
            "extra_sets": list(extra_sets),
        }
    )
    return report


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(a) == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _test(a_runs: list[dict], b_runs: list[dict], metric: str) -> dict[str, float]:
    from padrec.evaluation import EvalResult, paired_ttest, per_user_paired_test

    if len(a_runs) > 1:
        t = paired_ttest(
            [EvalResult.from_dict(r["test"]).main(metric) for r in a_runs],
            [EvalResult.from_dict(r["test"]).main(metric) for r in b_runs],
        )
        over = "seeds"
    else:
        t = per_user_paired_test(
            EvalResult.from_dict(a_runs[0]["test"]), EvalResult.from_dict(b_runs[0]["test"]), metric
        )
        over = "users"
    return {"metric": metric, "lift": t.lift, "p": t.p, "t": t.t, "n": t.n, "over": over}


def summarize_table(table: Table, results: dict[str, list[dict[str, Any]]], seeds: list[int]) -> dict[str, Any]:
    """Per-row mean ± std of :data:`COLUMNS` and the paired tests (module docstring)."""
    from padrec.evaluation import EvalResult

    rows: dict[str, Any] = {}
    for row in table.rows:
        runs = results.get(row.name)
        if not runs:
            continue
        flats = [EvalResult.from_dict(r["test"]).flat_metrics() for r in runs]
        rows[row.name] = {
            "role": row.role,
            "config": row.config,
            "overrides": list(row.overrides),
            "seeds": [r.get("seed") for r in runs],
            "metrics": {c: _mean_std([f.get(c, math.nan) for f in flats]) for c in COLUMNS},
            "by_popularity": {
                k.split("/")[0][3:]: _mean_std([f.get(k, math.nan) for f in flats])
                for k in flats[0]
                if k.startswith("pop") and k.endswith("/HR@10")
            },
            "per_seed": [r["test"]["overall"] for r in runs],
            "train_seconds": [sum(p["train_seconds"] for p in r["phases"]) for r in runs],
            "peak_rss_mb": [r.get("peak_rss_mb") for r in runs],
        }

    def best(role: str) -> str | None:
        names = [n for n, r in rows.items() if r["role"] == role]
        return max(names, key=lambda n: rows[n]["metrics"]["NDCG@10"][0], default=None)

    top_method, top_baseline = best("method"), best("baseline")
    headline = None
    if top_method and top_baseline:
        headline = {
            "method": top_method,
            "baseline": top_baseline,
            **{m: _test(results[top_method], results[top_baseline], m) for m in ("NDCG@10", "HR@10")},
        }
    if top_method:
        for name, r in rows.items():
            if name != top_method and len(results[name]) == len(results[top_method]):
                r["vs_best_method"] = _test(results[name], results[top_method], "NDCG@10")
    return {
        "table": table.name,
        "title": table.title,
        "notes": table.notes,
        "seeds": seeds,
        "columns": list(COLUMNS),
        "rows": rows,
        "best_method": top_method,
        "best_baseline": top_baseline,
        "headline": headline,
    }
