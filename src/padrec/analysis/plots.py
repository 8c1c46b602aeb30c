"""Figures and output files of the analyses (matplotlib, Agg backend).

Figures are built as ``matplotlib.figure.Figure`` objects on an Agg canvas, without pyplot,
so importing this module never changes the caller's matplotlib backend or global state.

Figures are saved atomically (:func:`padrec.io.atomic_path`), so an interrupted run never
leaves half a PNG behind. :func:`to_jsonable` makes analysis results strict JSON (NaN / inf
become ``null``) for :func:`padrec.io.write_json`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from padrec.io import atomic_path

COLOR_A = "#7f8c9d"
COLOR_B = "#e07b39"
COLOR_NEAR = "#2b6cb0"
COLOR_FAR = "#c53030"
COLOR_UP = "#23803a"
COLOR_DOWN = "#b91c1c"


# --- output helpers --------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays made plain, NaN/inf made ``None`` and keys made strings."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot-free figure on an Agg canvas."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure_atomic(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save ``fig`` as PNG to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def _fmt_lift(lift: float | None, a: float | None = None, b: float | None = None) -> str:
    if a == 0 and b is not None:
        return "both 0" if b == 0 else "from 0"
    if lift is None or not math.isfinite(lift):
        return "n/a"
    return f"{lift * 100:+.0f}%" if abs(lift) >= 0.095 else f"{lift * 100:+.1f}%"


def _val(x: Any) -> float:
    return float("nan") if x is None else float(x)


# --- Fig. 2: two models per frequency bucket and warm/median/cold ------------------------
def plot_bucket_comparison(comparison: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars of model A vs B per target bucket (1..B) and per warm/median/cold group.

    Args:
        comparison: the output of :func:`padrec.analysis.compare_buckets`.
        path: PNG to write.
    Each pair of bars is annotated with B's relative lift over A.
    """
    names = comparison["names"]
    metric = comparison["metric"]
    buckets = comparison["by_bucket"]
    groups = comparison["by_group"]
    bkeys = sorted(buckets, key=int)
    gkeys = [g for g in ("warm", "median", "cold") if g in groups] + [
        g for g in groups if g not in ("warm", "median", "cold")
    ]
    fig = new_figure((max(7.0, 0.62 * len(bkeys) + 0.9 * len(gkeys) + 3.5), 4.6))
    axes = fig.subplots(
        1,
        2,
        gridspec_kw={"width_ratios": [max(len(bkeys), 1), max(len(gkeys), 1) + 0.6]},
    )
    panels = [
        (axes[0], bkeys, buckets, "frequency bucket of the target (1 = warmest)"),
        (axes[1], gkeys, groups, "target group"),
    ]
    width = 0.38
    for ax, keys, rows, xlabel in panels:
        x = np.arange(len(keys))
        a = np.array([_val(rows[k]["a"]) for k in keys])
        b = np.array([_val(rows[k]["b"]) for k in keys])
        ax.bar(x - width / 2, np.nan_to_num(a), width, color=COLOR_A, label=names[0])
        ax.bar(x + width / 2, np.nan_to_num(b), width, color=COLOR_B, label=names[1])
        top = np.nanmax(np.concatenate([a, b, [0.0]])) if len(keys) else 0.0
        top = top if top > 0 else 1.0
        for i, k in enumerate(keys):
            lift = rows[k].get("lift")
            h = np.nanmax([a[i], b[i], 0.0])
            color = "0.35" if lift is None else (COLOR_UP if lift >= 0 else COLOR_DOWN)
            ax.text(
                x[i],
                h + 0.02 * top,
                _fmt_lift(lift, rows[k].get("a"), rows[k].get("b")),
                ha="center",
                va="bottom",
                fontsize=8,
                color=color,
                rotation=90 if len(keys) > 12 else 0,
            )
        labels = []
        for k in keys:
            users = rows[k].get("users_a", rows[k].get("users"))
            labels.append(f"{k}\nn={users}" if users is not None else str(k))
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, top * 1.18)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].set_ylabel(metric)
    axes[1].legend(loc="upper right", fontsize=8, frameon=False)
    ov = comparison.get("overall", {})
    title = f"{metric}: {names[1]} vs {names[0]}"
    if ov.get("a") is not None and ov.get("b") is not None:
        title += f"  (overall {ov['a']:.4f} → {ov['b']:.4f}, {_fmt_lift(ov.get('lift'))})"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


# --- Fig. 6: Kendall's tau per frequency bucket ----------------------------------------
def plot_discrepancy(result: dict[str, Any], path: str | Path) -> Path:
    """Bars of Kendall's tau per frequency bucket of the target (and of the history item).

    Args:
        result: the output of :func:`padrec.analysis.kendall_discrepancy`.
        path: PNG to write.
    A dashed line marks the overall tau.
    """
    by_t = result.get("by_target_bucket") or {}
    by_h = result.get("by_history_bucket") or {}
    keys = sorted(set(by_t) | set(by_h), key=int)
    fig = new_figure((max(6.0, 0.6 * len(keys) + 2.5), 4.2))
    ax = fig.subplots()
    x = np.arange(len(keys))
    series = [(by_t, "target item's bucket", COLOR_B)]
    if by_h:
        series.append((by_h, "history item's bucket", COLOR_A))
    overall = result.get("overall", {}).get("tau")
    all_t = [_val(r.get("tau")) for rows in (by_t, by_h) for r in rows.values()] + [_val(overall)]
    finite = [t for t in all_t if math.isfinite(t)]
    lo, hi = min([0.0] + finite), max([0.0] + finite)
    span = max(hi - lo, 0.05)
    pad = 0.012 * span
    digits = 2 if span >= 0.2 else 3
    crowded = len(keys) * len(series) > (16 if digits == 2 else 10)
    width = 0.8 / len(series)
    for s, (rows, label, color) in enumerate(series):
        taus = np.array([_val(rows.get(k, {}).get("tau")) for k in keys])
        pos = x - 0.4 + width * (s + 0.5)
        ax.bar(pos, np.nan_to_num(taus), width, color=color, label=label)
        for p, t in zip(pos, taus):
            up = not math.isfinite(t) or t >= 0
            ax.text(
                p,
                (t if math.isfinite(t) else 0.0) + (pad if up else -pad),
                f"{t:.{digits}f}" if math.isfinite(t) else "n/a",
                ha="center",
                va="bottom" if up else "top",
                fontsize=7,
                rotation=90 if crowded else 0,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.6},
            )
    if overall is not None and math.isfinite(overall):
        ax.axhline(overall, color="k", ls="--", lw=1, label=f"overall τ = {overall:.3f}", zorder=1.5)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([str(k) for k in keys])
    ax.set_xlabel("frequency bucket (1 = warmest)")
    ax.set_ylabel("Kendall's τ")
    head = 0.22 if crowded else 0.12
    ax.set_ylim(lo - head * span if lo < 0 else 0.0, hi + head * span)
    names = result.get("names", ["A", "B"])
    ax.set_title(
        f"Distance agreement of (history, target) pairs: {names[0]} vs {names[1]}\n"
        f"{result.get('distance', '')} distance, {result.get('num_pairs', 0):,} pairs",
        fontsize=10,
    )
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


# --- Fig. 3: distance distributions of near / far ID pairs -----------------------------
def plot_distance_distributions(
    result: dict[str, Any],
    samples: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    bins: int = 40,
) -> Path:
    """Histograms of the near / far pairs' normalised distances in each space.

    Args:
        result: the output of :func:`padrec.analysis.distance_distributions`.
        samples: ``{space: {"near": (k,) array, "far": (k,) array}}`` of normalised
            distances (``distance_distributions(..., return_samples=True)``).
        path: PNG to write.
        bins: histogram bins per panel (shared by the two groups).
    """
    spaces = [s for s in result["spaces"] if s in samples]
    fig = new_figure((5.2 * len(spaces), 4.0))
    axes = fig.subplots(1, len(spaces), squeeze=False)
    frac = result.get("fraction", 0.1)
    ref = result.get("reference", "id")
    for ax, space in zip(axes[0], spaces):
        near = np.asarray(samples[space]["near"], dtype=np.float64)
        far = np.asarray(samples[space]["far"], dtype=np.float64)
        both = np.concatenate([near, far])
        lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1e-6
        edges = np.linspace(lo, hi, bins + 1)
        ax.hist(
            near,
            bins=edges,
            density=True,
            alpha=0.55,
            color=COLOR_NEAR,
            label=f"nearest {frac:.0%} of pairs by {ref} distance",
        )
        ax.hist(
            far,
            bins=edges,
            density=True,
            alpha=0.55,
            color=COLOR_FAR,
            label=f"farthest {frac:.0%} of pairs by {ref} distance",
        )
        for arr, color in ((near, COLOR_NEAR), (far, COLOR_FAR)):
            if len(arr):
                ax.axvline(float(np.median(arr)), color=color, ls="--", lw=1)
        info = result["overlap"].get(space, {})
        ov, auc = info.get("overlap"), info.get("auc")
        sub = []
        if ov is not None:
            sub.append(f"overlap {ov:.2f}")
        if auc is not None:
            sub.append(f"AUC {auc:.2f}")
        ax.set_title(f"{space} embeddings" + (f"  ({', '.join(sub)})" if sub else ""), fontsize=10)
        ax.set_xlabel("distance / mean pairwise distance")
        ax.set_ylabel("density")
        ax.grid(alpha=0.25)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    from matplotlib.lines import Line2D

    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.3", ls="--", lw=1))
    labels.append("median of each group")
    fig.legend(handles, labels, fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3)
    fig.suptitle(
        f"Pairs split by {ref}-embedding distance "
        f"({result.get('num_pairs', 0):,} {result.get('pair_source', '')} pairs, "
        f"{result.get('distance', '')})",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure_atomic(fig, path)
