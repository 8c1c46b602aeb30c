"""Speed of padrec's hot paths on Prime Pantry (PAD protocol).

Measures, per model: seconds per training epoch (median of --epochs timed epochs after one
warm-up epoch), full-ranking evaluation of all test users over all items, peak memory, and
(for a finished run directory given with --serve) the serving latency of one request.

Run it alone on the machine (on shared cores, OMP_WAIT_POLICY=PASSIVE stops the threads of
two jobs from fighting but slows a job alone by about 20%).

Usage:
    python benchmarks/bench_speed.py --threads 2
    python benchmarks/bench_speed.py --serve runs/bench/pad/seed_1 --threads 1

Writes benchmarks/results/speed.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_training(method_name: str, method_cfg: dict, prepared, epochs: int, batch_size: int) -> dict:
    from padrec.evaluation import EvalConfig, evaluate
    from padrec.methods import METHODS, MethodContext, TrainBatch
    from padrec.training.trainer import make_score_fn

    split = prepared.split
    ctx = MethodContext(prepared.dataset.num_items, split.config.max_len, prepared.stats, prepared.text_embeddings)
    torch.manual_seed(0)
    method = METHODS.build(method_name, method_cfg, context=ctx)
    times = []
    inputs, targets = torch.from_numpy(split.train_inputs), torch.from_numpy(split.train_targets)
    users = torch.from_numpy(split.train_users)
    for phase in method.phases():
        method.begin_phase(phase.name)
        opt = torch.optim.AdamW(method.trainable_parameters(), lr=1e-3)
        ph_times, ph_cpu = [], []
        for _ in range(epochs + 1):
            method.train()
            perm = torch.randperm(len(inputs))
            t0, c0 = time.perf_counter(), time.process_time()
            for b in range(0, len(inputs), batch_size):
                idx = perm[b : b + batch_size]
                loss = sum(method.losses(TrainBatch(inputs[idx], targets[idx], users[idx])).values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            ph_times.append(time.perf_counter() - t0)
            ph_cpu.append(time.process_time() - c0)
        times.append(
            {
                "phase": phase.name,
                "seconds_per_epoch": statistics.median(ph_times[1:]),
                "cpu_seconds_per_epoch": statistics.median(ph_cpu[1:]),
            }
        )
    method.eval()
    ev, ev_cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        evaluate(make_score_fn(method), split.test, prepared.stats, EvalConfig(ks=[10, 20]))
        ev.append(time.perf_counter() - t0)
        ev_cpu.append(time.process_time() - c0)
    return {
        "phases": times,
        "full_eval_seconds": min(ev),
        "full_eval_cpu_seconds": min(ev_cpu),
        "load_average": os.getloadavg()[0],
        "eval_users": len(split.test),
        "items": prepared.dataset.num_items,
    }


def time_serving(run_dir: str, repeats: int) -> dict:
    from padrec.data import make_split
    from padrec.data.loading import load_dataset
    from padrec.experiment import load_experiment_config
    from padrec.serving import Recommender
    from padrec.training.checkpoint import read_json

    t0 = time.perf_counter()
    rec = Recommender.load(run_dir)
    load_s = time.perf_counter() - t0
    cfg = load_experiment_config(read_json(Path(run_dir) / "serving.json")["experiment"])
    split = make_split(load_dataset(cfg.data), cfg.split)
    lat = []
    for i in range(repeats):
        hist = [int(x) for x in split.test.histories[i % len(split.test)] if x > 0]
        lat.append(rec.recommend(hist, 10).latency_ms)
    lat.sort()
    return {
        "run": run_dir,
        "load_seconds": load_s,
        "requests": repeats,
        "median_ms": statistics.median(lat),
        "p95_ms": lat[int(0.95 * (len(lat) - 1))],
        "max_ms": lat[-1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per model (after one warm-up)")
    ap.add_argument("--models", default="sasrec,gru4rec", help="sasrec, gru4rec, caser, pad")
    ap.add_argument("--serve", default="", help="a finished run dir to time serving on")
    ap.add_argument("--repeats", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"threads": args.threads, "torch": torch.__version__, "cpu_count": os.cpu_count(), "models": {}}
    from padrec.config import load_yaml
    from padrec.experiment import load_experiment_config, prepare

    for name in filter(None, args.models.split(",")):
        cfg_file = {"sasrec": "sasrec.yaml", "gru4rec": "gru4rec.yaml", "caser": "sasrec.yaml", "pad": "pad.yaml"}[name]
        raw = load_yaml(ROOT / "configs" / cfg_file)
        if name == "caser":
            raw["method_config"].update(backbone="caser", backbone_config={"dropout": 0.3})
        cfg = load_experiment_config(raw)
        t0 = time.perf_counter()
        prepared = prepare(cfg)
        prep_s = time.perf_counter() - t0
        res = time_training(cfg.method, cfg.method_config, prepared, args.epochs, cfg.train.batch_size)
        res.update(prepare_seconds=prep_s, batch_size=cfg.train.batch_size, peak_rss_mb=rss_mb())
        out["models"][name] = res
        phases = ", ".join(
            f"{p['phase']} {p['seconds_per_epoch']:.2f} s (cpu {p['cpu_seconds_per_epoch']:.2f})" for p in res["phases"]
        )
        print(
            f"{name:8s} epoch: {phases} | full eval {res['full_eval_seconds']:.2f} s "
            f"(cpu {res['full_eval_cpu_seconds']:.2f}, load {res['load_average']:.1f}) "
            f"({res['eval_users']} users x {res['items']} items) | prepare {prep_s:.2f} s | "
            f"peak {res['peak_rss_mb']:.0f} MiB",
            flush=True,
        )
    if args.serve:
        torch.set_num_threads(args.threads)
        out["serving"] = time_serving(args.serve, args.repeats)
        s = out["serving"]
        print(
            f"serving {args.serve}: median {s['median_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, "
            f"load {s['load_seconds']:.2f} s ({args.threads} thread(s))"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
