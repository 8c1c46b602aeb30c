"""Check that two run directories give the same test metrics (to a tolerance) and save the check.

Used to show that a refactoring moved no number: train the same config and seed with the old
and the new code into two directories, then

    python benchmarks/same_numbers.py OLD_RUN NEW_RUN [OLD_RUN2 NEW_RUN2 ...] --tol 1e-6 \\
        --out benchmarks/results/same_numbers.json

Every overall, per-group and per-bucket metric of ``results.json`` is compared; the table lists
the headline metrics, the JSON every compared value. Exit status 1 when any differs by more
than ``--tol``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def flat_metrics(test: dict) -> dict[str, float]:
    """``results.json["test"]`` -> {"overall/NDCG@10": v, "warm/HR@5": v, "bucket3/NDCG@10": v, ...}."""
    out = {f"overall/{k}": v for k, v in test["overall"].items()}
    for name, row in test.get("by_group", {}).items():
        out.update({f"{name}/{k}": v for k, v in row.items() if k != "users"})
    for b, row in test.get("by_bucket", {}).items():
        out.update({f"bucket{b}/{k}": v for k, v in row.items() if k != "users"})
    out.update({f"coverage/{k}": v for k, v in test.get("coverage", {}).items()})
    return {k: v for k, v in out.items() if isinstance(v, (int, float))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="pairs of run directories: OLD NEW [OLD NEW ...]")
    ap.add_argument("--tol", type=float, default=1e-6, help="largest allowed absolute difference")
    ap.add_argument("--out", type=Path, help="write the comparison as JSON here")
    args = ap.parse_args()
    if len(args.runs) % 2:
        ap.error("give run directories in pairs: OLD NEW")
    report, ok = [], True
    print(f"{'old':34s} {'new':34s} {'metrics':>7s} {'max |diff|':>11s}  NDCG@10 old / new")
    for old, new in zip(args.runs[::2], args.runs[1::2]):
        a = flat_metrics(json.loads((old / "results.json").read_text())["test"])
        b = flat_metrics(json.loads((new / "results.json").read_text())["test"])
        common = sorted(set(a) & set(b))
        diffs = {k: abs(a[k] - b[k]) for k in common}
        worst = max(diffs.values()) if diffs else float("nan")
        same = bool(common) and worst <= args.tol and set(a) == set(b)
        ok &= same
        print(
            f"{str(old):34s} {str(new):34s} {len(common):7d} {worst:11.2e}  "
            f"{a['overall/NDCG@10']:.6f} / {b['overall/NDCG@10']:.6f}  {'same' if same else 'DIFFERENT'}"
        )
        report.append(
            {
                "old": str(old),
                "new": str(new),
                "compared": len(common),
                "max_abs_diff": worst,
                "only_old": sorted(set(a) - set(b)),
                "only_new": sorted(set(b) - set(a)),
                "same": same,
                "old_metrics": a,
                "new_metrics": b,
            }
        )
    if args.out:
        from padrec.io import write_json

        write_json(args.out, {"tolerance": args.tol, "pairs": report})
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
