"""Ranking a million-item catalogue: row-block size and top-K selection, A/B in one process.

Two measurements at 2 torch threads (``--threads``):

* ``blocks``: :func:`padrec.evaluation.evaluate` over ``--users`` synthetic users (histories of
  4-40 random items, window 50, seen items removed) × ``--items`` items with a d=64
  dot-product score function, ranks only (validation) and with top-K lists (test), with row
  blocks of at most 8 MB of scores (padrec's default) and with the former 128-row blocks,
  then the default again (the machine's drift shows as the difference of the two).
* ``topk``: milliseconds per row of ``torch.topk(k=21)`` against padrec's threshold-filtered
  selection (``padrec.evaluation.ranking._top_candidates``) on rows of 16,859 / 100,000 /
  1,000,000 scores.

Usage:
    python benchmarks/bench_wide_ranking.py --out benchmarks/results/wide_ranking.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from padrec.experiment import peak_rss_mb


def bench_blocks(users: int, items: int) -> dict:
    from bench_evaluate import synthetic_eval_set

    import padrec.evaluation.ranking as ranking
    from padrec.evaluation import EvalConfig, evaluate

    es = synthetic_eval_set(users, items, window=50, max_history=39)
    table = torch.randn(items + 1, 64, generator=torch.Generator().manual_seed(0))

    def score_fn(h: torch.Tensor) -> torch.Tensor:
        return table[h].mean(1) @ table.T

    default = ranking._CPU_BLOCK_BYTES
    out = {}
    for label, block in (("8 MB blocks", default), ("128-row blocks", 1 << 40), ("8 MB blocks again", default)):
        ranking._CPU_BLOCK_BYTES = block
        for topk in (False, True):
            t = time.perf_counter()
            evaluate(score_fn, es, None, EvalConfig(), with_topk=topk)
            out[f"{label}, {'with top-K' if topk else 'ranks only'}"] = round(time.perf_counter() - t, 2)
            print(f"{label:18s} {'with top-K' if topk else 'ranks only':10s} {out[list(out)[-1]]:7.2f} s", flush=True)
    ranking._CPU_BLOCK_BYTES = default
    return out


def bench_topk() -> dict:
    from padrec.evaluation.ranking import _top_candidates

    g = torch.Generator().manual_seed(0)
    out = {}
    for n in (16_860, 100_001, 1_000_001):
        rows = max(2, min(128, (8 << 20) // (4 * n)))
        s = (torch.randn(2, n, generator=g).repeat(64, 1) + torch.randn(128, 1, generator=g))[:rows].contiguous()
        for name, fn in (
            ("torch.topk", lambda x: torch.topk(x, 21, dim=1)),
            ("filter", lambda x: _top_candidates(x, 21)),
        ):
            fn(s)
            t = time.perf_counter()
            for _ in range(20):
                fn(s)
            out[f"{n - 1} items, {name}"] = round((time.perf_counter() - t) / 20 / rows * 1000, 4)
            print(f"{n - 1:>9,} items  {name:10s} {out[list(out)[-1]]:.4f} ms per row", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    before = [round(x, 2) for x in os.getloadavg()]
    doc = {
        "command": " ".join(["python", *sys.argv]),
        "load_average_before": before,
        "blocks_seconds": bench_blocks(args.users, args.items),
        "topk_ms_per_row": bench_topk(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if args.out:
        out = Path(args.out)
        part = out.with_suffix(".json.tmp")
        part.write_text(json.dumps(doc, indent=1) + "\n")
        part.replace(out)


if __name__ == "__main__":
    main()
