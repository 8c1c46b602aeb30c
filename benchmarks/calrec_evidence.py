"""CALRec beside SASRec, PAD and FAERec on the same test users, and the cost of its LLM.

Subcommands (each prints a table and writes one JSON file atomically to benchmarks/results/):

``compare [--runs DIR] [--seed S]``
    Reads the finished rows of ``padrec reproduce calrec`` (``DIR/<row>/seed_S/results.json``,
    default ``runs/reproduce/calrec/prime_pantry``). Every row was tested on the same fixed
    sample of test users (``eval.users`` 1,000, ``users_seed`` 0); the script checks that the
    users and targets are identical. Per row: HR@1, HR@10, NDCG@10 with 95% confidence
    intervals over users, overall and for targets in the warm / median / cold groups, and for
    targets with **zero training interactions** (items the ID models never saw as a target
    or in a training history); the per-user paired t-test of CALRec against each other row;
    training seconds per phase. Output: ``benchmarks/results/calrec_compare.json``.

``latency --calrec RUN --pad RUN [--requests N]``
    Per-request latency on this machine, loading excluded: CALRec's ``score_all`` on one
    history at a time (sampling N texts, BM25, merge; the generation cache off, so every
    request generates) against PAD's served model (``Recommender.recommend``, k 10) on the
    same histories; p50 / p95 / mean ms, CALRec's generated tokens per second, load average
    before and after. Output: ``benchmarks/results/calrec_latency.json``.

Examples::

    padrec reproduce calrec --data prime_pantry --seeds 42 --threads 2
    python benchmarks/calrec_evidence.py compare
    python benchmarks/calrec_evidence.py latency --calrec runs/reproduce/calrec/prime_pantry/calrec/seed_42 \\
        --pad runs/reproduce/calrec/prime_pantry/pad_1k/seed_42
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from padrec.data.stats import GROUP_NAMES
from padrec.evaluation.metrics import per_user_metric
from padrec.evaluation.result import EvalResult
from padrec.evaluation.significance import mean_confidence_interval, paired_ttest
from padrec.experiment import peak_rss_mb
from padrec.io import read_json, write_json

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("HR@1", "HR@10", "NDCG@10")
ROWS = (
    "calrec",
    "sasrec_1k",
    "pad_1k",
    "faerec_1k",
    "calrec_no_stage1",
    "calrec_no_stage2",
    "calrec_no_tt",
    "calrec_no_ut",
)


def _ci(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of per-user values: the 95% interval of ``mean_confidence_interval``."""
    mean = float(values.mean()) if len(values) else float("nan")
    return (mean, *mean_confidence_interval(values))


def _item_stats(dataset: str):
    """The item statistics every row was evaluated with (10 buckets, PAD's protocol)."""
    from padrec.data import compute_item_stats
    from padrec.data.loading import DataConfig, load_dataset

    return compute_item_stats(load_dataset(DataConfig(name=dataset)), 10)


def compare(runs: Path, seed: int, dataset: str) -> dict[str, Any]:
    found = {r: runs / r / f"seed_{seed}" / "results.json" for r in ROWS}
    results = {r: EvalResult.from_dict(read_json(p)["test"]) for r, p in found.items() if p.exists()}
    raw = {r: read_json(p) for r, p in found.items() if p.exists()}
    if "calrec" not in results:
        sys.exit(f"error: {found['calrec']} not found; run `padrec reproduce calrec` first")
    ref = results["calrec"]
    for name, res in results.items():
        if not (np.array_equal(res.users, ref.users) and np.array_equal(res.targets, ref.targets)):
            sys.exit(f"error: row {name} was tested on other users than calrec (eval.users / users_seed differ)")
    stats = _item_stats(dataset)
    groups = {"all": np.ones(len(ref.targets), bool)}
    for i, g in enumerate(GROUP_NAMES):
        groups[g] = stats.group[ref.targets] == i
    groups["zero-train"] = stats.train_frequency[ref.targets] == 0
    report: dict[str, Any] = {"users": int(len(ref.users)), "group_users": {g: int(m.sum()) for g, m in groups.items()}}
    rows = {}
    for name, res in results.items():
        row: dict[str, Any] = {}
        for g, mask in groups.items():
            for m in METRICS:
                mean, lo, hi = _ci(per_user_metric(res.ranks, m)[mask])
                row[f"{g}/{m}"] = {"mean": mean, "ci95": [lo, hi]}
        if name != "calrec":
            for m in ("HR@10", "NDCG@10"):
                t = paired_ttest(per_user_metric(ref.ranks, m), per_user_metric(res.ranks, m))
                row[f"calrec_vs_this/{m}"] = {"mean_diff": t.mean_diff, "p": t.p}
        row["train_seconds"] = {p["phase"]: p["train_seconds"] for p in raw[name]["phases"]}
        row["total_seconds"] = raw[name].get("total_seconds")
        rows[name] = row
    report["rows"] = rows
    _print_compare(report)
    write_json(RESULTS / "calrec_compare.json", report)
    return report


def _print_compare(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"CALRec and the others on the same {report['users']} test users (95% CI)")
    table.add_column("row")
    cols = [(g, m) for g in ("all", "warm", "median", "cold", "zero-train") for m in METRICS]
    for g, m in cols:
        table.add_column(f"{g} {m}\n(n={report['group_users'][g]})", justify="right")
    for name, row in report["rows"].items():
        cells = []
        for g, m in cols:
            v = row[f"{g}/{m}"]
            cells.append(f"{v['mean']:.4f}" if not np.isnan(v["mean"]) else "-")
        table.add_row(name, *cells)
    Console(width=240).print(table)


def latency(calrec_dir: Path, pad_dir: Path, requests: int) -> dict[str, Any]:
    import torch

    from padrec.experiment.runs import load_run
    from padrec.methods.calrec.cache import GenerationCache
    from padrec.serving.recommender import Recommender

    load_before = os.getloadavg()
    method, cfg, prepared = load_run(calrec_dir)
    hist = prepared.split.test.histories[:requests]
    rows = [[int(x) for x in h[h > 0]] for h in hist]
    calrec_ms, tokens, gen_s = [], 0, 0.0
    for h in hist:
        method.cache = GenerationCache(None)  # no cache: every request generates
        before_tokens, before_s = method.stats["tokens"], method.stats["generation_seconds"]
        t0 = time.perf_counter()
        with torch.inference_mode():
            method.score_all(torch.as_tensor(h).unsqueeze(0))
        calrec_ms.append(1000 * (time.perf_counter() - t0))
        tokens += method.stats["tokens"] - before_tokens
        gen_s += method.stats["generation_seconds"] - before_s
    del method
    rec = Recommender.load(pad_dir)
    for h in rows[:5]:
        rec.recommend(h, k=10)  # warm-up
    pad_ms = []
    for _ in range(5):
        for h in rows:
            t0 = time.perf_counter()
            rec.recommend(h, k=10)
            pad_ms.append(1000 * (time.perf_counter() - t0))

    def summary(ms: list[float]) -> dict[str, float]:
        q = np.percentile(ms, [50, 95])
        return {"p50_ms": float(q[0]), "p95_ms": float(q[1]), "mean_ms": float(statistics.fmean(ms)), "n": len(ms)}

    report = {
        "calrec": {
            **summary(calrec_ms),
            "tokens_per_second": tokens / gen_s if gen_s else None,
            "samples_per_request": cfg.method_config["num_generations"],
        },
        "pad": summary(pad_ms),
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    report["ratio_p50"] = report["calrec"]["p50_ms"] / report["pad"]["p50_ms"]
    print(
        f"CALRec p50 {report['calrec']['p50_ms']:.0f} ms (p95 {report['calrec']['p95_ms']:.0f}), "
        f"{report['calrec']['tokens_per_second']:.0f} tokens/s; PAD p50 {report['pad']['p50_ms']:.2f} ms "
        f"(p95 {report['pad']['p95_ms']:.2f}); ratio {report['ratio_p50']:.0f}x; "
        f"load {load_before[0]:.2f} -> {report['load_after'][0]:.2f}"
    )
    write_json(RESULTS / "calrec_latency.json", report)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="accuracy on the same users, with CIs and cold items")
    c.add_argument("--runs", type=Path, default=Path("runs/reproduce/calrec/prime_pantry"))
    c.add_argument("--seed", type=int, default=42)
    c.add_argument("--data", default="prime_pantry")
    lat = sub.add_parser("latency", help="per-request latency of CALRec and PAD")
    lat.add_argument("--calrec", type=Path, required=True)
    lat.add_argument("--pad", type=Path, required=True)
    lat.add_argument("--requests", type=int, default=20)
    lat.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.cmd == "compare":
        compare(args.runs, args.seed, args.data)
    else:
        import torch

        torch.set_num_threads(args.threads)
        latency(args.calrec, args.pad, args.requests)


if __name__ == "__main__":
    main()
