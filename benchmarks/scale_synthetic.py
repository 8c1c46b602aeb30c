"""A synthetic catalogue of a million items: train one epoch and rank the whole catalogue.

Issue "Speed and scale", target 3: 1,000,000 items x 100,000 users must train one epoch and
evaluate in full within 24 GiB, with peak memory and time per stage reported, and chunk
sizes chosen from the memory available.

The data (seeded, written as RecBole atomic files so that every catalogue item exists even
when nobody interacted with it):

* item popularity follows a Zipf-Mandelbrot law, p(rank r) proportional to (r + 10)^-0.9,
  over a random ranking of the items (real catalogues: a few heads, a long cold tail);
* user lengths are 5 + lognormal (median 8, sigma 0.8), capped at 200 (5-core-like);
* a sequential signal a model can learn: with probability 0.5 the next item is one of the 10
  items after the previous one in a hidden item order, otherwise a fresh popularity draw.

Stages, each with wall seconds and the peak resident memory sampled every 0.2 s:
``generate`` (the files), ``load`` (read + split + item statistics, padrec's data layer),
``build`` (the model), ``train`` (one epoch, SASRec d 64 with the ``sampled_ce`` loss;
its validation ranks a fixed sample of ``--valid-users`` users), ``evaluate`` (full ranking
of every test user over the whole catalogue, top-K lists and coverage included).

Usage:
    python benchmarks/scale_synthetic.py                       # 1M items x 100k users
    python benchmarks/scale_synthetic.py --items 20000 --users 5000 --out /tmp/scale.json

Writes benchmarks/results/scale_synthetic.json (atomically) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def generate(work: Path, users: int, items: int, seed: int) -> dict:
    """Write ``synthetic.inter`` / ``synthetic.item`` under ``work``; return their sizes."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(200, 5 + np.floor(rng.lognormal(np.log(8), 0.8, size=users))).astype(np.int64)
    total = int(lengths.sum())
    ranking = rng.permutation(items)  # popularity rank -> item index 0..N-1
    weights = (np.arange(items, dtype=np.float64) + 10.0) ** -0.9
    cdf = np.cumsum(weights / weights.sum())
    fresh = ranking[np.minimum(np.searchsorted(cdf, rng.random(total)), items - 1)]
    hidden = rng.permutation(items)  # hidden order for the sequential signal
    position = np.empty(items, dtype=np.int64)
    position[hidden] = np.arange(items)
    follow = rng.random(total) < 0.5
    steps = rng.integers(1, 11, size=total)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first = np.zeros(total, dtype=bool)
    first[starts] = True
    seq = fresh.copy()
    # a follow step depends on the (possibly also followed) previous item: one sequential sweep
    for i in np.flatnonzero(follow & ~first):
        seq[i] = hidden[(position[seq[i - 1]] + steps[i]) % items]
    user_col = np.repeat(np.arange(users), lengths)
    inter = work / "synthetic.inter"
    with open(inter, "w") as f:
        f.write("user_id:token\titem_id:token\n")
        for lo in range(0, total, 1_000_000):
            hi = min(lo + 1_000_000, total)
            block = np.char.add(np.char.add(user_col[lo:hi].astype(str), "\t"), seq[lo:hi].astype(str))
            f.write("\n".join(block.tolist()) + "\n")
    with open(work / "synthetic.item", "w") as f:
        f.write("item_id:token\ttitle:token_seq\n")
        ids = np.arange(items).astype(str)
        f.write("\n".join(np.char.add(np.char.add(ids, "\titem "), ids).tolist()) + "\n")
    return {"interactions": total, "mean_length": total / users, "distinct_items_interacted": int(len(np.unique(seq)))}


class Sampler(threading.Thread):
    """Peak resident memory per stage label, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        from padrec.training.memory import resident_bytes

        self.read = resident_bytes
        self.interval = interval
        self.stage = "start"
        self.peaks: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.note()
            time.sleep(self.interval)

    def note(self) -> None:
        rss = self.read() or 0
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--negatives", type=int, default=2048, help="sampled_ce negatives shared by a batch")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--valid-users", type=int, default=10_000, help="validation sample (the test ranks everyone)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = padrec's share of the cores)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default="", help="keep the data here (default: a temporary directory)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_synthetic.json"))
    args = ap.parse_args()

    import torch

    from padrec.evaluation import evaluate
    from padrec.experiment.config import load_experiment_config
    from padrec.experiment.prepare import build_method, prepare
    from padrec.training.threads import take_slot
    from padrec.training.trainer import Trainer, make_score_fn

    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        take_slot()
    sampler = Sampler()
    sampler.start()
    stages: dict[str, float] = {}
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="padrec-scale-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()

    def stage(name: str) -> float:
        sampler.note()
        sampler.stage = name
        sampler.note()
        return time.perf_counter()

    t = stage("generate")
    data_info = generate(work, args.users, args.items, args.seed)
    stages["generate"] = time.perf_counter() - t

    cfg = load_experiment_config(
        {
            "name": "scale_synthetic",
            "output_dir": str(work / "run"),
            "data": {"format": "recbole_atomic", "path": str(work), "name": "synthetic", "use_cache": False},
            "split": {"protocol": "faerec"},
            "method": "sequential",
            "method_config": {
                "backbone": "sasrec",
                "hidden_size": 64,
                "loss": "sampled_ce",
                "sampled_negatives": args.negatives,
                "backbone_config": {"num_layers": 2, "num_heads": 2, "dropout": 0.2},
            },
            "train": {
                "epochs": 1,
                "batch_size": args.batch_size,
                "lr": 3e-3,
                "valid_users": args.valid_users,
                "device": args.device,
                "num_threads": args.threads,
                "progress": True,
            },
            "eval": {"ks": [10, 20]},
        }
    )
    t = stage("load")
    prepared = prepare(cfg)
    stages["load"] = time.perf_counter() - t
    n_items, n_users = prepared.dataset.num_items, len(prepared.split.test)

    t = stage("build")
    torch.manual_seed(cfg.train.seed)
    method = build_method(cfg, prepared)
    device = torch.device(args.device)
    method.to(device)
    stages["build"] = time.perf_counter() - t

    t = stage("train")
    phase = method.phases()[0]
    fit = Trainer(method, prepared.split, cfg.train, cfg.eval, device=device).fit(
        phase.name, work / "run" / "train", "scale"
    )
    stages["train"] = time.perf_counter() - t

    t = stage("evaluate")
    method.eval()
    from padrec.evaluation.ranking import auto_chunk_users

    chunk = auto_chunk_users(n_items, device)
    result = evaluate(
        make_score_fn(method), prepared.split.test, prepared.stats, cfg.eval, device=device, progress=True
    )
    stages["evaluate"] = time.perf_counter() - t
    stage("done")
    sampler.stop.set()

    history = fit.history[-1] if fit.history else {}
    doc = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "users": args.users,
        "items": n_items,
        "test_users": n_users,
        "data": data_info,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "eval_chunk_users": chunk,
        "seconds": {k: round(v, 1) for k, v in stages.items()},
        "train_epoch_seconds": round(fit.train_seconds, 1),
        "validation": {"users": args.valid_users, **{k: v for k, v in history.items() if k != "epoch"}},
        "peak_rss_gib": {k: round(v / 2**30, 2) for k, v in sampler.peaks.items() if k not in ("start", "done")},
        "test": {"HR@10": result.overall.get("HR@10"), "NDCG@10": result.overall.get("NDCG@10"), **result.coverage},
        "test_eval_seconds": round(result.seconds, 1),
        "test_users_per_second": round(n_users / result.seconds, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".json.tmp")
    part.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    part.replace(out)
    print(f"\n{n_users:,} users x {n_items:,} items, {doc['torch_threads']} threads, eval chunk {chunk} users")
    print(f"{'stage':10s} {'seconds':>9s} {'peak RSS GiB':>13s}")
    for name, sec in stages.items():
        print(f"{name:10s} {sec:9.1f} {doc['peak_rss_gib'].get(name, float('nan')):13.2f}")
    print(f"test HR@10 {doc['test']['HR@10']:.4f}  NDCG@10 {doc['test']['NDCG@10']:.4f}; wrote {out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
