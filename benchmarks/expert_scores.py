"""Test metrics of each PAD expert on its own, next to the fused model, for finished runs.

PAD's fused score is Σ_e g_e(bucket) · logit_e; this scores every expert alone (its own
sequence vector against its own item table) on the same test users, so the effect of an
alignment variant on the alignment expert is visible even when the gate gives that expert
little weight.

Usage:
    python benchmarks/expert_scores.py runs/bench/pad runs/bench/pad_infonce ... \\
        --out benchmarks/results/expert_scores_alignment.json

Each argument is a run directory holding seed_* subdirectories (or a single run). Prints
NDCG@10 overall (mean ± sample std over seeds) and warm / median / cold per expert (mean).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from padrec.experiment import peak_rss_mb
from padrec.io import write_json


def expert_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    from padrec.evaluation import EvalConfig, evaluate
    from padrec.experiment import load_run

    method, cfg, prepared = load_run(run_dir)
    eval_cfg = EvalConfig(ks=[10], history_handling=cfg.eval.history_handling)
    scorers = {"fused": method.score_all}
    for name in method.config.experts:
        ex = method.expert(name)
        scorers[name] = lambda h, ex=ex: ex.all_logits(ex.sequence_vector(h))
    out = {}
    for name, fn in scorers.items():
        r = evaluate(fn, prepared.split.test, prepared.stats, eval_cfg)
        out[name] = {
            "NDCG@10": r.overall["NDCG@10"],
            "HR@10": r.overall["HR@10"],
            **{f"{g}/NDCG@10": r.by_group[g]["NDCG@10"] for g in ("warm", "median", "cold")},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import torch

    torch.set_grad_enabled(False)
    table: dict[str, dict] = {}
    for run in map(Path, args.runs):
        seeds = sorted(run.glob("seed_*")) or [run]
        per_seed = [expert_metrics(s) for s in seeds]
        agg = {e: {m: float(np.mean([ps[e][m] for ps in per_seed])) for m in per_seed[0][e]} for e in per_seed[0]}
        std = {
            e: {
                m: float(np.std([ps[e][m] for ps in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0
                for m in per_seed[0][e]
            }
            for e in per_seed[0]
        }
        table[run.name] = {"seeds": [s.name for s in seeds], "mean": agg, "std": std, "per_seed": per_seed}
        for e, row in agg.items():
            print(
                f"{run.name:26s} {e:6s} NDCG@10 {row['NDCG@10']:.4f} ± {std[e]['NDCG@10']:.4f}  "
                f"warm {row['warm/NDCG@10']:.4f}  median {row['median/NDCG@10']:.4f}  "
                f"cold {row['cold/NDCG@10']:.4f}",
                flush=True,
            )
    table["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if args.out:
        write_json(args.out, table)
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
