"""Markdown table of a suite's results (benchmarks/results/suite_<name>.json), for BENCHMARKS.md.

Usage:
    python benchmarks/suite_table.py pad-ablations            # vs the suite's baseline
    python benchmarks/suite_table.py pad-backbones --baseline gru4rec

Columns: HR@10 and NDCG@10 (mean ± sample std over seeds), NDCG@10 on warm / median / cold
targets, the relative NDCG@10 lift over the baseline and the p-value of a paired t-test over
seeds (scipy), and the alignment-phase validation NDCG@10 where the run has one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def mean_std(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1):.4f}" if len(a) > 1 else f"{a.mean():.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite")
    ap.add_argument("--baseline", default="")
    args = ap.parse_args()
    from padrec.evaluation import paired_ttest

    data = json.loads((ROOT / "benchmarks" / "results" / f"suite_{args.suite}.json").read_text())
    base_name = args.baseline or data["baseline"]
    base = data["runs"].get(base_name)
    print(f"| run | HR@10 | NDCG@10 | warm | median | cold | lift vs {base_name} | p | align valid |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in data["runs"].items():
        nd = [m["NDCG@10"] for m in r["per_seed"]]
        groups = [mean_std([g[k]["NDCG@10"] for g in r["by_group"]]) for k in ("warm", "median", "cold")]
        lift = p = ""
        if base is not None and name != base_name and len(base["per_seed"]) == len(nd) > 1:
            t = paired_ttest(nd, [m["NDCG@10"] for m in base["per_seed"]])
            lift, p = f"{t.lift:+.1%}", f"{t.p:.2g}"
        align = [
            ph["best_value"]
            for seed in r.get("phases", [])
            for ph in seed
            if ph["phase"] == "align" and "best_value" in ph
        ]
        print(
            f"| {name} | {mean_std([m['HR@10'] for m in r['per_seed']])} | {mean_std(nd)} | "
            f"{' | '.join(groups)} | {lift} | {p} | {mean_std(align) if align else ''} |"
        )


if __name__ == "__main__":
    main()
