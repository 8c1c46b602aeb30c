"""Wall time of the whole PAD pipeline (encode + every phase + evaluation) from a fresh cache.

For each seed: a new empty ``PADREC_CACHE`` (so the data are parsed and every title encoded),
then ``padrec train -c <config> -o <runs>/seed_<s> --seed <s> --no-progress`` as a child
process. Recorded per seed: wall seconds, the child's peak resident memory, the load average
before and after, a machine-speed probe (median ms of a 2048² float32 matmul on 2 threads,
before and after: shared VMs drift by ±20% over minutes, so compare timings with it), each
phase's epochs / best epoch / train and validation seconds, and test NDCG@10. Then mean ± std.

Usage:
    python benchmarks/pipeline_timing.py --seeds 1,2,3
    python benchmarks/pipeline_timing.py --config configs/pad_early_stopping.yaml --seeds 1 \
        --out benchmarks/results/pipeline_timing_early_stopping.json

Run it alone on an idle machine. Writes benchmarks/results/pipeline_timing.json (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def speed_probe() -> float:
    """Median milliseconds of a 2048 x 2048 float32 matmul on 2 threads (a machine-speed probe)."""
    import torch

    torch.set_num_threads(2)
    a = torch.randn(2048, 2048)
    for _ in range(3):
        a @ a
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            a @ a
        times.append((time.perf_counter() - t) / 10 * 1000)
    return round(statistics.median(times), 1)


def phase_rows(results: dict) -> list[dict]:
    rows = []
    for p in results["phases"]:
        hist = p.get("history", [])
        rows.append(
            {
                "phase": p["phase"],
                "epochs": p["epochs_run"],
                "best_epoch": p["best_epoch"],
                "train_s": round(sum(h.get("train_s", 0.0) for h in hist), 1),
                "valid_s": round(sum(h.get("valid_s", 0.0) for h in hist), 1),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "pad.yaml"))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--runs-dir", default="runs/pipeline_timing")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline_timing.json"))
    args = ap.parse_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        run_dir = Path(args.runs_dir) / f"seed_{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
        cache = tempfile.mkdtemp(prefix="padrec-timing-cache-")
        probe_before, load_before = speed_probe(), os.getloadavg()
        cmd = ["padrec", "train", "-c", args.config, "-o", str(run_dir), "--seed", str(seed), "--no-progress"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, env={**os.environ, "PADREC_CACHE": cache}, capture_output=True, text=True)
        wall = time.perf_counter() - t
        shutil.rmtree(cache, ignore_errors=True)
        if proc.returncode != 0:
            sys.exit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
        (run_dir / "train.log").write_text(proc.stdout + proc.stderr)
        results = json.loads((run_dir / "results.json").read_text())
        row = {
            "seed": seed,
            "wall_seconds": round(wall, 1),
            # children's peak so far: the largest of the seeds run until now
            "peak_rss_mb_max_so_far": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "run_peak_rss_mb": round(results["peak_rss_mb"], 1),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "matmul_probe_ms_before": probe_before,
            "matmul_probe_ms_after": speed_probe(),
            "test_NDCG@10": results["test"]["overall"]["NDCG@10"],
            "phases": phase_rows(results),
        }
        rows.append(row)
        print(f"seed {seed}: {wall:.1f} s wall, test NDCG@10 {row['test_NDCG@10']:.4f}", flush=True)

    def mean_std(key: str) -> list[float]:
        vals = [r[key] for r in rows]
        return [statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0]

    doc = {
        "command": " ".join(["python", *sys.argv]),
        "config": args.config,
        "seeds": rows,
        "wall_seconds_mean_std": mean_std("wall_seconds"),
        "test_NDCG@10_mean_std": mean_std("test_NDCG@10"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".json.tmp")
    part.write_text(json.dumps(doc, indent=1) + "\n")
    part.replace(out)
    w, n = doc["wall_seconds_mean_std"], doc["test_NDCG@10_mean_std"]
    print(f"\n{len(rows)} seed(s): wall {w[0]:.1f} ± {w[1]:.1f} s, test NDCG@10 {n[0]:.4f} ± {n[1]:.4f}; wrote {out}")


if __name__ == "__main__":
    main()
