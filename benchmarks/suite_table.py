"""Markdown table of a suite's results (benchmarks/results/suite_<name>.json), for BENCHMARKS.md.

Usage:
    python benchmarks/suite_table.py pad-ablations            # vs the suite's baseline
    python benchmarks/suite_table.py pad-backbones --baseline gru4rec

Columns: HR@10 and NDCG@10 (mean ± sample std over seeds), NDCG@10 on warm / median / cold
targets, the relative NDCG@10 lift over the baseline and the p-value of a paired t-test over
seeds (scipy), and the alignment-phase validation NDCG@10 where the run has one.

``--faerec`` adds FAERec's columns (runs recorded since they exist): tail HR@10 / NDCG@10
(users whose target is outside the 20% most popular items), Coverage@10 and
Tail-Coverage@10, each with the paired t-test against the baseline, and a second table by
target popularity (1-4, 5-9, 10-19, 20-49, 50+ interactions over whole sequences).
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
    ap.add_argument("--faerec", action="store_true", help="also FAERec's tail, coverage and popularity tables")
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
    if args.faerec:
        faerec_tables(data, base_name)


def faerec_tables(data: dict, base_name: str) -> None:
    from padrec.evaluation import paired_ttest

    def column(r: dict, section: str, key: str, metric: str) -> list[float]:
        rows = r.get(section) or []
        return [float((row.get(key, row) if key else row).get(metric) or 0.0) for row in rows]

    cols = [
        ("HR@10", "per_seed", "", "HR@10"),
        ("NDCG@10", "per_seed", "", "NDCG@10"),
        ("tail HR@10", "head_tail", "tail", "HR@10"),
        ("tail NDCG@10", "head_tail", "tail", "NDCG@10"),
        ("Coverage@10", "coverage", "", "Coverage@10"),
        ("TailCoverage@10", "coverage", "", "TailCoverage@10"),
    ]
    base = data["runs"].get(base_name)
    print()
    print("| run | " + " | ".join(f"{c[0]} (p vs {base_name})" for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, r in data["runs"].items():
        if not r.get("head_tail"):
            continue
        cells = []
        for _, section, key, metric in cols:
            vals = column(r, section, key, metric)
            cell = mean_std(vals)
            if base is not None and name != base_name and base.get("head_tail") and len(vals) > 1:
                ref = column(base, section, key, metric)
                if len(ref) == len(vals):
                    cell += f" ({paired_ttest(vals, ref).p:.2g})"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    groups = ["1-4", "5-9", "10-19", "20-49", "50+"]
    print()
    print("| run (HR@10 by target popularity) | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for name, r in data["runs"].items():
        if not r.get("by_popularity") or not r["by_popularity"][0]:
            continue
        cells = [mean_std([float(p[g]["HR@10"] or 0.0) for p in r["by_popularity"]]) for g in groups]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
