"""Several padrec trainings at once on one machine: seconds per epoch against one job alone.

For N in ``--jobs`` (default 1, 2, 4), starts N identical ``padrec train`` processes at the
same moment (SASRec on the embedded Prime Pantry, a fixed number of epochs, no early stop,
no cache sharing issues: each has its own run directory) and reads each run's mean training
seconds per epoch. Two thread policies:

- ``auto``: ``--threads 0``, padrec's fair share (``padrec.training.threads``);
- ``all``: ``--threads <cores>`` for every job, what torch's default did before (each job
  takes every core).

The target (issue "Speed and scale", item 6): N jobs each take about N times the time of one.

Usage:
    python benchmarks/concurrent_jobs.py --jobs 1,2,4 --epochs 3

Run it on an otherwise idle machine. Writes benchmarks/results/concurrent_jobs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_batch(n: int, policy: str, epochs: int, cores: int, work: Path) -> dict:
    procs, dirs = [], []
    threads = "0" if policy == "auto" else str(cores)
    env = {**os.environ, "PADREC_JOBS_DIR": str(work / "jobs")}
    for i in range(n):
        out = work / f"{policy}_{n}_{i}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "padrec",
            "train",
            "-c",
            str(ROOT / "configs" / "sasrec.yaml"),
            "--set",
            f"train.epochs={epochs}",
            "--set",
            "train.patience=1000",
            "--threads",
            threads,
            "--no-progress",
            "-o",
            str(out),
        ]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env))
        dirs.append(out)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"a job failed:\n{err.decode()[-2000:]}")
    wall = time.perf_counter() - t0
    per_job = []
    peak_rss: list[float | None] = []
    for out in dirs:
        res = json.loads((out / "results.json").read_text())
        per_job.append(res["phases"][0]["seconds_per_epoch"])
        peak_rss.append(res.get("peak_rss_mb"))
    return {
        "jobs": n,
        "policy": policy,
        "threads_flag": threads,
        "seconds_per_epoch": per_job,
        "mean_seconds_per_epoch": sum(per_job) / n,
        "wall_seconds": wall,
        "peak_rss_mb": peak_rss,
        "load_average_before": [round(x, 2) for x in load_before],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="1,2,4")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--policies", default="auto,all")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "concurrent_jobs.json"))
    args = ap.parse_args()
    from padrec.training.threads import usable_cores

    cores = usable_cores()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for policy in args.policies.split(","):
            for n in [int(x) for x in args.jobs.split(",")]:
                row = run_batch(n, policy, args.epochs, cores, work)
                rows.append(row)
                print(
                    f"{policy:4s} {n} job(s): {row['mean_seconds_per_epoch']:6.1f} s/epoch each "
                    f"(load before {row['load_average_before'][0]:.2f})",
                    flush=True,
                )
    single = {r["policy"]: r["mean_seconds_per_epoch"] for r in rows if r["jobs"] == 1}
    for r in rows:
        if r["policy"] in single:
            r["slowdown_vs_one_job"] = r["mean_seconds_per_epoch"] / single[r["policy"]]
            r["slowdown_per_job"] = r["slowdown_vs_one_job"] / r["jobs"]
    doc = {"command": " ".join(sys.argv), "cores": cores, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(doc, indent=1) + "\n")
    tmp_out.replace(out)
    for r in rows:
        print(
            f"{r['policy']:4s} {r['jobs']} job(s): x{r.get('slowdown_vs_one_job', float('nan')):.2f} of one job "
            f"({r.get('slowdown_per_job', float('nan')):.2f} per job; 1.0 = fair)"
        )


if __name__ == "__main__":
    main()
