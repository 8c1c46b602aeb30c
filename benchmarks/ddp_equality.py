"""Data-parallel equality check (issue 16, target 4): 2 gloo processes against 1 process.

Trains the same config at the same global batch once as a single process and once under
``torchrun --standalone --nproc_per_node 2`` (gloo on CPU; each process then takes half the
cores), for each seed, and compares the test figures: the difference between the two modes
must lie within the spread between seeds. Paired t-test over seeds (scipy). Resumable: a
finished run directory is reused.

    python benchmarks/ddp_equality.py --seeds 1,2,3 \
        --out benchmarks/results/ddp_equality.json

Raw figures per run: test HR@10 / NDCG@10, training seconds per epoch, wall seconds of the
whole command, peak resident memory (largest process, from ``wait4``) and the 1-minute
load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/sasrec.yaml")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--epochs", type=int, default=10, help="fixed epochs with a cosine schedule")
    ap.add_argument("--threads", type=int, default=2, help="cores in all; 2 processes get half each")
    ap.add_argument("--runs-dir", default="runs/bench/ddp_equality")
    ap.add_argument("--out", default="benchmarks/results/ddp_equality.json")
    return ap.parse_args(argv)


def train_command(args: argparse.Namespace, seed: int, procs: int, out: Path) -> list[str]:
    """The ``padrec train`` command line of one run (1 process, or ``procs`` under torchrun)."""
    sets = [
        f"train.seed={seed}",
        f"train.epochs={args.epochs}",
        "train.schedule=cosine",
        f"train.validate_from={args.epochs}",
        f"train.num_threads={max(1, args.threads // procs)}",
    ]
    tail = ["train", "-c", args.config, "--no-progress", "-o", str(out)]
    for s in sets:
        tail += ["--set", s]
    if procs == 1:
        return [sys.executable, "-m", "padrec", *tail]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={procs}",
        "-m",
        "padrec",
        *tail,
    ]


def run_one(cmd: list[str], out: Path) -> dict:
    """Runs (or reuses) one training; returns its figures."""
    results = out / "results.json"
    record: dict = {"command": " ".join(cmd)}
    if not results.is_file():
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
        meta = {
            "wall_seconds": wall,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "load1_before": load_before,
            "load1_after": os.getloadavg()[0],
        }
        (out / "bench_meta.json").write_text(json.dumps(meta, indent=2))
    record.update(json.loads((out / "bench_meta.json").read_text()))
    res = json.loads(results.read_text())
    record["test_HR@10"] = res["test"]["overall"]["HR@10"]
    record["test_NDCG@10"] = res["test"]["overall"]["NDCG@10"]
    phase = res["phases"][0] if isinstance(res["phases"], list) else next(iter(res["phases"].values()))
    record["seconds_per_epoch"] = phase.get("seconds_per_epoch")
    return record


def summarise(rows: dict[str, list[dict]]) -> dict:
    """Mean ± std per mode and the paired t-test of the two modes over seeds."""
    from scipy import stats

    out: dict = {}
    for metric in ("test_HR@10", "test_NDCG@10"):
        one = [r[metric] for r in rows["1"]]
        two = [r[metric] for r in rows["2"]]
        t = stats.ttest_rel(one, two) if len(one) > 1 else None
        out[metric] = {
            "1_process": [statistics.mean(one), statistics.stdev(one) if len(one) > 1 else 0.0],
            "2_processes": [statistics.mean(two), statistics.stdev(two) if len(two) > 1 else 0.0],
            "mean_abs_difference": statistics.mean(abs(a - b) for a, b in zip(one, two)),
            "paired_t_p": None if t is None else float(t.pvalue),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, list[dict]] = {"1": [], "2": []}
    for seed in seeds:
        for procs in (1, 2):
            out = REPO / args.runs_dir / f"p{procs}_seed{seed}"
            print(f"[ddp_equality] seed {seed}, {procs} process(es) -> {out}", flush=True)
            rec = run_one(train_command(args, seed, procs, out), out)
            rec["seed"] = seed
            rows[str(procs)].append(rec)
            print(
                f"  test NDCG@10 {rec['test_NDCG@10']:.4f}  HR@10 {rec['test_HR@10']:.4f}  {rec['wall_seconds']:.0f} s wall  peak {rec['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    summary = summarise(rows)
    result = {"config": args.config, "epochs": args.epochs, "threads": args.threads, "runs": rows, "summary": summary}
    path = REPO / args.out
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)
    print(f"{'metric':<14}{'1 process':>20}{'2 processes':>20}{'p':>8}")
    for metric, s in summary.items():
        p = "n/a" if s["paired_t_p"] is None else f"{s['paired_t_p']:.2f}"
        print(
            f"{metric:<14}{s['1_process'][0]:>12.4f} ± {s['1_process'][1]:.4f}{s['2_processes'][0]:>12.4f} ± {s['2_processes'][1]:.4f}{p:>8}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
