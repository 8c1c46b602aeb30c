"""Time per epoch and peak memory of every FAERec backbone, ID-only and inside FAERec.

On FAERec's Beauty (52,204 users, 57,289 items) under the settings of
``configs/<backbone>_faerec_base.yaml`` (d 128, window 50, batch 256, BCE with one
negative, Adam): seconds per optimiser step (median of ``--steps`` timed steps after 3
warm-up steps), the steps of one epoch (prefix examples for the backbones that are not
causal), their product as the epoch time, the wall time of one full validation (every user
against every item), and the peak resident memory of the process (each model runs in a
process of its own, data loading included).

FAERec needs item text, which FAERec's Beauty does not have (its API embeddings are not
public): its rows use a fixed random 1536-d matrix in place of the embeddings. Time and
memory do not depend on the values, only on the width (the paper's 1536).

Run it alone on an otherwise idle machine, one model at a time.

Usage:
    python benchmarks/backbone_cost.py --threads 2
    python benchmarks/backbone_cost.py --models sasrec,faerec_sasrec --steps 20

Writes benchmarks/results/backbone_cost_<data>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("sasrec", "fmlprec", "lrurec", "narm", "lightsans", "gmlp", "faerec_sasrec", "faerec_lrurec")
TEXT_DIM = 1536


def measure(model: str, data: str, steps: int, threads: int) -> dict:
    """Run one model in this process and return its figures."""
    import torch
    import yaml

    from padrec.evaluation import EvalConfig, evaluate
    from padrec.experiment import load_experiment_config, prepare
    from padrec.methods import METHODS, MethodContext
    from padrec.methods.base import StepInfo
    from padrec.methods.batches import BatchSettings, WindowBatches
    from padrec.training.optim import build_optimizer
    from padrec.training.trainer import make_score_fn

    torch.set_num_threads(threads)
    backbone = model.removeprefix("faerec_")
    raw = yaml.safe_load((ROOT / "configs" / f"{backbone}_faerec_base.yaml").read_text())
    raw["data"]["name"] = data
    raw["train"]["progress"] = False
    cfg = load_experiment_config(raw)
    t0 = time.perf_counter()
    prepared = prepare(cfg)
    load_s = time.perf_counter() - t0
    text = None
    method_name, method_cfg = cfg.method, dict(raw["method_config"])
    if model.startswith("faerec_"):
        g = torch.Generator().manual_seed(0)
        text = torch.randn(prepared.dataset.num_items + 1, TEXT_DIM, generator=g)
        text[0] = 0
        method_name = "faerec"
        method_cfg = {k: v for k, v in method_cfg.items() if k not in ("loss",)}
    ctx = MethodContext(prepared.dataset.num_items, prepared.split.config.max_len, prepared.stats, text)
    torch.manual_seed(0)
    method = METHODS.build(method_name, method_cfg, context=ctx)
    method.begin_phase(method.phases()[0].name)
    make = method.current_phase.batches or WindowBatches.from_split
    batches = make(prepared.split, BatchSettings(cfg.train.batch_size, 1, 0, 1))
    steps_per_epoch = batches.steps_per_epoch()
    opt = build_optimizer(method.trainable_parameters(), cfg.train)
    method.train()
    times = []
    shuffle = torch.Generator().manual_seed(0)
    it = batches.epoch(shuffle)
    for i in range(steps + 3):
        try:
            micro = next(it)
        except StopIteration:
            it = batches.epoch(shuffle)
            micro = next(it)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = sum(method(micro[0], StepInfo(0, i, steps_per_epoch, 1)).values())
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    method.eval()
    t = time.perf_counter()
    with torch.no_grad():
        evaluate(
            make_score_fn(method),
            prepared.split.valid,
            prepared.stats,
            EvalConfig(ks=[5, 10, 20], history_handling="zero"),
        )
    valid_s = time.perf_counter() - t
    return {
        "model": model,
        "data": data,
        "threads": threads,
        "parameters": sum(p.numel() for p in method.parameters()),
        "train_examples": cfg.split.train_examples,
        "steps_per_epoch": steps_per_epoch,
        "step_seconds_median": step_s,
        "epoch_seconds_estimate": step_s * steps_per_epoch,
        "validation_seconds": valid_s,
        "data_load_seconds": load_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "text_dim": TEXT_DIM if text is not None else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list from {','.join(MODELS)}")
    ap.add_argument("--data", default="beauty", help="yelp, food or beauty")
    ap.add_argument("--steps", type=int, default=20, help="timed optimiser steps per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # child process: one model
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.data, args.steps, args.threads)))
        return
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"backbone_cost_{args.data}.json"
    rows = []
    for model in [m for m in args.models.split(",") if m]:
        if model not in MODELS:
            sys.exit(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
        load = os.getloadavg()
        cmd = [
            sys.executable,
            __file__,
            "--one",
            model,
            "--data",
            args.data,
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        )
        if proc.returncode != 0:
            sys.exit(f"{model} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["load_average_before"] = [round(x, 2) for x in load]
        rows.append(row)
        print(
            f"{model:14s} {row['steps_per_epoch']:6d} steps x {row['step_seconds_median'] * 1e3:7.1f} ms"
            f" = {row['epoch_seconds_estimate']:7.1f} s/epoch; validation {row['validation_seconds']:5.1f} s;"
            f" peak RSS {row['peak_rss_mb']:6.0f} MB (load {load[0]:.2f})",
            flush=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")
    tmp.replace(out)
    print(f"written {out}")


if __name__ == "__main__":
    main()
