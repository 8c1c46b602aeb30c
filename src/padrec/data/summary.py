"""Dataset statistics as a JSON-ready dict, and their rendering as rich tables."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from padrec.data.dataset import SequenceDataset
from padrec.data.protocols import EvalSet, Split
from padrec.data.stats import GROUP_NAMES, ItemStats


def repeat_targets(eval_set: EvalSet) -> int:
    """Number of examples whose target already occurs in the user's prior history."""
    lens = np.diff(eval_set.seen_indptr)
    if not len(lens) or not lens.sum():
        return 0
    owner = np.repeat(np.arange(len(lens)), lens)
    hit = eval_set.seen_items == np.repeat(eval_set.targets, lens)
    return int(np.unique(owner[hit]).size)


def dataset_summary(dataset: SequenceDataset, stats: ItemStats, split: Split | None = None) -> dict[str, Any]:
    """Statistics of ``dataset`` with its item ``stats`` (and ``split`` when given).

    Returns plain Python values (JSON-serialisable): counts, sequence-length summary, density,
    per-bucket frequency bounds and interaction mass, warm/median/cold and head/tail item
    counts, and the number of test targets repeating an earlier item of the same user (from
    ``split.test`` when given, else the last item of every sequence of >= 2 items).
    """
    lengths = dataset.lengths
    n_users, n_items, n_inter = dataset.num_users, dataset.num_items, dataset.num_interactions
    total_mass = int(stats.train_frequency[1:].sum())
    buckets = [
        {
            "bucket": b,
            "min_freq": lo,
            "max_freq": hi,
            "items": n,
            "mass": mass,
            "mass_share": (mass / total_mass) if total_mass else 0.0,
        }
        for b, (lo, hi, n, mass) in enumerate(stats.bucket_bounds, start=1)
    ]
    groups = {}
    for code, gname in enumerate(GROUP_NAMES):
        sel = stats.group[1:] == code
        bks = stats.bucket[1:][sel]
        groups[gname] = {
            "items": int(sel.sum()),
            "buckets": [int(bks.min()), int(bks.max())] if len(bks) else [],
            "mass": int(stats.train_frequency[1:][sel].sum()),
        }
    if split is not None:
        repeats, basis = repeat_targets(split.test), "test examples of the split"
    else:
        repeats = sum(int(s[-1] in s[:-1]) for s in dataset.sequences if len(s) >= 2)
        basis = "last item of each sequence"
    out: dict[str, Any] = {
        "name": dataset.name,
        "users": n_users,
        "items": n_items,
        "interactions": n_inter,
        "length": {
            "min": int(lengths.min()) if n_users else 0,
            "mean": float(lengths.mean()) if n_users else 0.0,
            "median": float(np.median(lengths)) if n_users else 0.0,
            "max": int(lengths.max()) if n_users else 0,
        },
        "density": n_inter / (n_users * n_items) if n_users and n_items else 0.0,
        "text_columns": [str(c) for c in dataset.item_table.columns],
        "training_interactions": total_mass,
        "items_unseen_in_training": int((stats.train_frequency[1:] == 0).sum()),
        "num_buckets": stats.num_buckets,
        "buckets": buckets,
        "groups": groups,
        "head_items": int(stats.is_head[1:].sum()),
        "tail_items": int(n_items - stats.is_head[1:].sum()),
        "repeat_test_targets": int(repeats),
        "repeat_basis": basis,
    }
    if split is not None:
        out["split"] = {
            "protocol": split.config.protocol,
            "max_len": split.config.max_len,
            "short_sequences": split.config.short_sequences,
            "train_examples": len(split.train_users),
            "train_targets": int((split.train_targets > 0).sum()),
            "valid_users": len(split.valid),
            "test_users": len(split.test),
        }
    return out


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """Render :func:`dataset_summary` output as rich tables on ``console``."""
    ov = Table(title=f"dataset {summary['name']}", show_header=False)
    ov.add_column("statistic")
    ov.add_column("value", justify="right")
    length = summary["length"]
    rows = [
        ("users", f"{summary['users']:,}"),
        ("items", f"{summary['items']:,}"),
        ("interactions", f"{summary['interactions']:,}"),
        (
            "length min / mean / median / max",
            f"{length['min']} / {length['mean']:.2f} / {length['median']:g} / {length['max']}",
        ),
        ("density", f"{summary['density']:.6f}"),
        ("text columns", ", ".join(summary["text_columns"]) or "(none)"),
        ("training interactions", f"{summary['training_interactions']:,}"),
        ("items unseen in training", f"{summary['items_unseen_in_training']:,}"),
        ("head / tail items", f"{summary['head_items']:,} / {summary['tail_items']:,}"),
        (f"repeat test targets ({summary['repeat_basis']})", f"{summary['repeat_test_targets']:,}"),
    ]
    for key, value in rows:
        ov.add_row(key, value)
    console.print(ov)

    bt = Table(title=f"{summary['num_buckets']} frequency buckets (training frequency; 1 = warmest)")
    for col in ("bucket", "min freq", "max freq", "items", "interactions", "share"):
        bt.add_column(col, justify="right")
    for b in summary["buckets"]:
        bt.add_row(
            str(b["bucket"]),
            str(b["min_freq"]),
            str(b["max_freq"]),
            f"{b['items']:,}",
            f"{b['mass']:,}",
            f"{100 * b['mass_share']:.1f}%",
        )
    console.print(bt)

    gt = Table(title="item groups")
    for col in ("group", "buckets", "items", "interactions"):
        gt.add_column(col, justify="right")
    for gname, g in summary["groups"].items():
        span = f"{g['buckets'][0]}-{g['buckets'][1]}" if g["buckets"] else "-"
        gt.add_row(gname, span, f"{g['items']:,}", f"{g['mass']:,}")
    console.print(gt)

    if "split" in summary:
        s = summary["split"]
        st = Table(
            title=f"split: protocol {s['protocol']}, window {s['max_len']}, short sequences {s['short_sequences']}",
            show_header=False,
        )
        st.add_column("part")
        st.add_column("count", justify="right")
        st.add_row("training sequences", f"{s['train_examples']:,}")
        st.add_row("training targets", f"{s['train_targets']:,}")
        st.add_row("validation users", f"{s['valid_users']:,}")
        st.add_row("test users", f"{s['test_users']:,}")
        console.print(st)
