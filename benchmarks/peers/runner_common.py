"""Shared parts of the peer runners: options, per-epoch bookkeeping, stopping rules, JSON output.

Standard library + numpy + torch only (imported from the RecBole and RePlay virtualenvs).

Per epoch the runner trains one epoch (timed: ``train_seconds``; the cumulative sum is the
benchmark's clock), then evaluates the validation and test histories with
``faerec_protocol.evaluate_scores`` (timed separately: ``eval_seconds``, never added to the clock)
and calls :meth:`RunLog.end_epoch`, which records the figures, rewrites the JSON atomically and
says whether to stop:

- ``patience``: ``--patience`` validations in a row without a strict gain of valid NDCG@20 (as
  padrec's trainer);
- ``cap``: the next epoch would overrun ``--max-minutes`` of training: cumulative train seconds +
  the mean epoch so far > cap (so training stays within the cap, as far as the mean predicts);
- ``epochs``: ``--epochs`` epochs done.

``seconds_to_target`` = cumulative train seconds at the first epoch whose test NDCG@10 reaches
``--target-ndcg``; the best-validation epoch is the first epoch with the highest valid NDCG@20.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPLIT = "/work/venvs/peer_data/beauty/split.npz"


def parse_args(
    tool: str,
    argv: list[str] | None = None,
    description: str = "",
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The options both runners share (``tool``: ``recbole`` or ``replay``, names the default JSON);
    ``extra`` adds a runner's own options."""
    ap = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(ap)
    ap.add_argument("--split", default=DEFAULT_SPLIT, help="split exported by export_split.py")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="training wall cap (default 30)")
    ap.add_argument("--epochs", type=int, default=200, help="maximum epochs (default 200)")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--target-ndcg", type=float, default=0.0180, help="test NDCG@10 target (FAERec's SASRec)")
    ap.add_argument("--patience", type=int, default=10, help="validations without valid NDCG@20 gain")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / f"peer_{tool}_beauty.json"))
    ap.add_argument("--max-steps-per-epoch", type=int, default=0, help="smoke tests only: steps per epoch (0 = all)")
    ap.add_argument("--eval-users", type=int, default=0, help="smoke tests only: evaluate the first N users (0 = all)")
    ap.add_argument("--eval-batch", type=int, default=512, help="users scored per forward pass at evaluation")
    return ap.parse_args(argv)


def rss_mb() -> float:
    """Current resident set size (MB), from /proc (0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB), ``ru_maxrss``."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` ("" where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        return ""


def machine_info(threads: int) -> dict[str, Any]:
    """Where the run happened: CPU, threads, OMP policy, load at start."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_at_start": list(os.getloadavg()),
        "mem_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


class RunLog:
    """Per-epoch records, stopping rules and the JSON file (rewritten atomically after every epoch)."""

    def __init__(self, args: argparse.Namespace, tool: str, versions: dict[str, str], settings: dict[str, Any]):
        self.args = args
        self.t_start = time.perf_counter()
        self.out = Path(args.out)
        self.epochs: list[dict[str, Any]] = []
        self.best_valid = -1.0
        self.best_epoch: int | None = None
        self.bad = 0
        self.stop_reason: str | None = None
        self.result: dict[str, Any] = {
            "tool": tool,
            "versions": versions,
            "benchmark": "issue 16 target 2: wall seconds of training until test NDCG@10 >= target (FAERec Beauty)",
            "settings": settings,
            "options": {k: v for k, v in vars(args).items()},
            "smoke_test": bool(args.max_steps_per_epoch or args.eval_users),
            "protocol": (
                "padrec's FAERec split exported by benchmarks/peers/export_split.py; full ranking over items "
                "1..N, seen items (whole prior history) scored 0, ties by item id (faerec_protocol.py)"
            ),
            "stop_rules": (
                "patience: N validations without strict valid NDCG@20 gain; cap: stop before an epoch when "
                "cumulative train seconds + mean epoch seconds > max_minutes*60; epochs: max epochs"
            ),
            "machine": machine_info(args.threads),
        }

    def note(self, **fields: Any) -> None:
        """Add top-level fields (counts, data preparation time, ...) and rewrite the JSON."""
        self.result.update(fields)
        self.write()

    @property
    def cumulative_train_seconds(self) -> float:
        return float(sum(e["train_seconds"] for e in self.epochs))

    def end_epoch(
        self, epoch: int, train_seconds: float, loss: float, steps: int, valid: dict, test: dict, eval_seconds: float
    ) -> bool:
        """Record epoch ``epoch`` (1-based); True when training should stop (reason in ``stop_reason``)."""
        cum = self.cumulative_train_seconds + train_seconds
        v20 = valid["metrics"]["NDCG@20"]
        rec = {
            "epoch": epoch,
            "train_seconds": round(train_seconds, 3),
            "cumulative_train_seconds": round(cum, 3),
            "eval_seconds": round(eval_seconds, 3),
            "eval_score_seconds": round(valid["score_seconds"] + test["score_seconds"], 3),
            "steps": steps,
            "loss": loss,
            "valid_NDCG@20": v20,
            "valid_HR@20": valid["metrics"]["HR@20"],
            "test_HR@10": test["metrics"]["HR@10"],
            "test_NDCG@10": test["metrics"]["NDCG@10"],
            "test_HR@20": test["metrics"]["HR@20"],
            "test_NDCG@20": test["metrics"]["NDCG@20"],
            "load1": round(os.getloadavg()[0], 2),
            "rss_mb": round(rss_mb(), 1),
        }
        self.epochs.append(rec)
        if v20 > self.best_valid:
            self.best_valid, self.best_epoch, self.bad = v20, epoch, 0
        else:
            self.bad += 1
        mean_epoch = cum / len(self.epochs)
        print(
            f"epoch {epoch:3d}  loss {loss:.4f}  train {train_seconds:.1f}s (cum {cum:.1f}s)  eval {eval_seconds:.1f}s  "
            f"valid NDCG@20 {v20:.4f}{' *' if self.bad == 0 else ''}  test HR@10 {rec['test_HR@10']:.4f} "
            f"NDCG@10 {rec['test_NDCG@10']:.4f}  load {rec['load1']}  rss {rec['rss_mb']:.0f}MB",
            flush=True,
        )
        if self.bad >= self.args.patience:
            self.stop_reason = f"patience ({self.args.patience} validations without valid NDCG@20 gain)"
        elif epoch >= self.args.epochs:
            self.stop_reason = f"epochs ({self.args.epochs})"
        elif cum + mean_epoch > self.args.max_minutes * 60:
            self.stop_reason = (
                f"cap ({self.args.max_minutes:g} min): {cum:.0f}s trained + {mean_epoch:.0f}s/epoch would overrun"
            )
        self.write()
        return self.stop_reason is not None

    def finish(self, reason: str | None = None) -> None:
        """Final write (``reason`` overrides the stop reason, e.g. after an interruption)."""
        if reason:
            self.stop_reason = reason
        self.write(final=True)

    def summary(self) -> dict[str, Any]:
        target = self.args.target_ndcg
        hit = next((e for e in self.epochs if e["test_NDCG@10"] >= target), None)
        best = next((e for e in self.epochs if e["epoch"] == self.best_epoch), None)
        train_s = [e["train_seconds"] for e in self.epochs]
        return {
            "target_ndcg": target,
            "seconds_to_target": hit["cumulative_train_seconds"] if hit else None,
            "epoch_reaching_target": hit["epoch"] if hit else None,
            "best_valid_epoch": self.best_epoch,
            "best_valid_NDCG@20": best["valid_NDCG@20"] if best else None,
            "best_valid_test": (
                {k: best[k] for k in ("test_HR@10", "test_NDCG@10", "test_HR@20", "test_NDCG@20")} if best else None
            ),
            "max_test_NDCG@10": max((e["test_NDCG@10"] for e in self.epochs), default=None),
            "epochs_run": len(self.epochs),
            "cumulative_train_seconds": round(self.cumulative_train_seconds, 3),
            "train_seconds_per_epoch_mean": float(np.mean(train_s)) if train_s else None,
            "train_seconds_per_epoch_median": float(np.median(train_s)) if train_s else None,
            "eval_seconds_mean": float(np.mean([e["eval_seconds"] for e in self.epochs])) if self.epochs else None,
            "load1_mean": float(np.mean([e["load1"] for e in self.epochs])) if self.epochs else None,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "total_wall_seconds": round(time.perf_counter() - self.t_start, 3),
            "stop_reason": self.stop_reason,
        }

    def write(self, final: bool = False) -> None:
        """Write the JSON atomically (temporary file + rename)."""
        data = {**self.result, **self.summary(), "finished": final, "per_epoch": self.epochs}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=str)
        os.replace(tmp, self.out)
