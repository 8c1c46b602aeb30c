"""Two models side by side per frequency bucket and warm/median/cold group (PAD Fig. 2).

Inputs are evaluation results in the shape of ``EvalResult.to_dict()``::

    {"overall": {"NDCG@10": ...}, "by_bucket": {"1": {"NDCG@10": ..., "users": n}, ...},
     "by_group": {"warm": {...}, "median": {...}, "cold": {...}}, ...}

Buckets group users by the training frequency of their target item (equal interaction
mass, 1 = warmest); groups are buckets merged into warm / median / cold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from padrec.io import read_json


def _eval_part(data: dict[str, Any], split: str, where: Path) -> dict[str, Any]:
    if split in data and isinstance(data[split], dict):
        part = data[split]
    elif "by_bucket" in data or "overall" in data:
        part = data
    else:
        raise ValueError(f"{where}: no '{split}' results (keys: {sorted(data)})")
    for key in ("overall", "by_bucket", "by_group"):
        if key not in part:
            raise ValueError(f"{where}: the '{split}' results have no '{key}' field")
    return part


def _mean_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key mean of metric rows over seeds (None/NaN values ignored; ``users`` from the first)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    out: dict[str, Any] = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        if k == "users":
            out[k] = next((v for v in vals if v is not None), None)
            continue
        nums = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(float(v))]
        out[k] = float(np.mean(nums)) if nums else None
    return out


def seed_result_files(summary_path: str | Path) -> list[Path]:
    """The per-seed ``results.json`` files a multi-seed ``summary.json`` lists (field ``runs``).

    A listed run path is tried as written, then as a folder of the summary's directory (so a
    moved multi-seed directory still resolves).
    """
    summary_path = Path(summary_path)
    return _seed_results(summary_path, read_json(summary_path))


def _seed_results(summary_path: Path, summary: dict[str, Any]) -> list[Path]:
    base = summary_path.parent
    runs = summary.get("runs") or [f"seed_{s}" for s in summary.get("seeds", [])]
    if not runs:
        raise ValueError(f"{summary_path}: no 'runs' or 'seeds' field listing the per-seed runs")
    paths = []
    for r in runs:
        candidates = [Path(r), base / Path(r).name]
        found = next((c / "results.json" for c in candidates if (c / "results.json").exists()), None)
        if found is None:
            raise FileNotFoundError(
                f"{summary_path}: per-seed results '{r}/results.json' not found (also looked under {base})"
            )
        paths.append(found)
    return paths


def load_results(path: str | Path, split: str = "test") -> dict[str, Any]:
    """Evaluation results of a run, as ``{"overall", "by_bucket", "by_group", ...}``.

    Args:
        path: a run directory holding ``results.json`` (``{"test": EvalResult dict, ...}``),
            a multi-seed directory holding ``summary.json`` whose ``runs`` have their own
            ``results.json`` (metrics are averaged over seeds), or a JSON file of either kind
            or of a bare ``EvalResult.to_dict()`` (``padrec evaluate -o``).
        split: ``test`` or ``valid``.
    Returns:
        The results dict; ``seeds`` (list of result files averaged) is added for multi-seed runs.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "results.json").exists():
            path = path / "results.json"
        elif (path / "summary.json").exists():
            path = path / "summary.json"
        else:
            raise FileNotFoundError(f"{path}: neither results.json nor summary.json found")
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if "per_seed" in data or ("runs" in data and split not in data and "by_bucket" not in data):
        files = _seed_results(path, data)
        parts = [_eval_part(read_json(f), split, f) for f in files]
        merged: dict[str, Any] = {"overall": _mean_rows([p["overall"] for p in parts])}
        for field in ("by_bucket", "by_group"):
            keys: list[str] = []
            for p in parts:
                keys += [str(k) for k in p[field] if str(k) not in keys]
            merged[field] = {k: _mean_rows([_rows(p, field).get(k, {}) for p in parts]) for k in keys}
        merged["seeds"] = [str(f) for f in files]
        merged["source"] = str(path)
        return merged
    part = dict(_eval_part(data, split, path))
    part["source"] = str(path)
    return part


def _metric_value(row: dict[str, Any] | None, metric: str) -> float | None:
    if not row:
        return None
    v = row.get(metric)
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def relative_lift(a: float | None, b: float | None) -> float | None:
    """(b − a) / a; ``None`` when either is missing or ``a`` is 0."""
    if a is None or b is None or a == 0:
        return None
    return (b - a) / a


def _compare_row(ra: dict[str, Any] | None, rb: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    a, b = _metric_value(ra, metric), _metric_value(rb, metric)
    return {
        "a": a,
        "b": b,
        "lift": relative_lift(a, b),
        "diff": None if a is None or b is None else b - a,
        "users_a": (ra or {}).get("users"),
        "users_b": (rb or {}).get("users"),
    }


def _rows(part: dict[str, Any], field: str) -> dict[str, dict[str, Any]]:
    return {str(k): v for k, v in (part.get(field) or {}).items()}


def compare_buckets(
    result_a: dict[str, Any],
    result_b: dict[str, Any],
    metric: str = "NDCG@10",
    names: Sequence[str] = ("A", "B"),
) -> dict[str, Any]:
    """Model A vs model B on one metric, overall, per frequency bucket and per group.

    Args:
        result_a, result_b: ``EvalResult.to_dict()``-shaped dicts (see :func:`load_results`).
        metric: e.g. ``NDCG@10`` or ``HR@10``; must be in both results' ``overall``.
        names: display names of A and B.
    Returns:
        ``{"metric", "names", "overall": row, "by_bucket": {"1": row, ...},
        "by_group": {"warm": row, "median": row, "cold": row}}`` where each row is
        ``{"a", "b", "lift" = (b − a) / a, "diff" = b − a, "users_a", "users_b"}``
        (``None`` where a value is missing or the lift is undefined).
    """
    for name, res in zip(names, (result_a, result_b)):
        overall = res.get("overall") or {}
        if metric not in overall:
            raise KeyError(
                f"results of {name} ({res.get('source', 'given dict')}) have no metric {metric!r}; "
                f"available: {sorted(overall)}"
            )
    out: dict[str, Any] = {
        "metric": metric,
        "names": list(names),
        "sources": [result_a.get("source"), result_b.get("source")],
        "overall": _compare_row(result_a["overall"], result_b["overall"], metric),
    }
    out["overall"]["users_a"] = result_a.get("num_users")
    out["overall"]["users_b"] = result_b.get("num_users")
    ba, bb = _rows(result_a, "by_bucket"), _rows(result_b, "by_bucket")
    keys = sorted(set(ba) | set(bb), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    out["by_bucket"] = {k: _compare_row(ba.get(k), bb.get(k), metric) for k in keys}
    ga, gb = _rows(result_a, "by_group"), _rows(result_b, "by_group")
    order = ["warm", "median", "cold"]
    gkeys = [g for g in order if g in ga or g in gb] + sorted((set(ga) | set(gb)) - set(order))
    out["by_group"] = {g: _compare_row(ga.get(g), gb.get(g), metric) for g in gkeys}
    return out
