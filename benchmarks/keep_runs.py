"""Keep finished ``padrec reproduce`` rows across machines: pack their results, restore them later.

``padrec reproduce`` reuses a row whose ``<runs-dir>/<table>/<data>/<row>/seed_S/results.json``
exists, but run directories live under ``runs/`` (ignored by git) and do not outlive a
machine. A table that takes longer than one session (PAD's Table 2 on Games: ~5 h on 2 cores)
is built over several: ``pack`` copies each finished row's ``results.json`` (metrics, per-user
ranks for the paired tests, timings; no checkpoints) gzipped under
``benchmarks/results/reproduce/kept/`` to be committed, and ``restore`` writes them back, so
the next ``padrec reproduce ...`` reports the kept rows without training them and trains only
what is missing. A restored row has no checkpoints: it is reported, not resumed or served.

Usage:
    python benchmarks/keep_runs.py pack --table pad-table2 --data games
    python benchmarks/keep_runs.py restore
    python benchmarks/keep_runs.py list
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from padrec.io import write_bytes
from padrec.rundir import IncompleteRunError, check_complete

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "benchmarks" / "results" / "reproduce" / "kept"


def _finished(seed_dir: Path) -> bool:
    """A seed directory whose run finished: results.json present, not marked as training."""
    if not (seed_dir / "results.json").exists():
        return False
    try:
        check_complete(seed_dir)
    except IncompleteRunError:
        return False
    return True


def pack(runs_dir: Path, table: str, data: str, rows: list[str] | None, kept: Path = KEPT) -> int:
    """Gzip every finished ``seed_*/results.json`` of ``runs_dir/table/data`` into ``kept``."""
    base = runs_dir / table / data
    if not base.is_dir():
        sys.exit(f"error: {base} does not exist (no finished rows of {table} on {data} here)")
    n = 0
    for row_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        if rows and row_dir.name not in rows:
            continue
        for seed_dir in sorted(row_dir.glob("seed_*")):
            if not _finished(seed_dir):
                print(f"skip {seed_dir}: not finished")
                continue
            raw = (seed_dir / "results.json").read_bytes()
            json.loads(raw)  # refuse to keep a truncated file
            dst = kept / table / data / row_dir.name / seed_dir.name / "results.json.gz"
            write_bytes(dst, gzip.compress(raw, compresslevel=9, mtime=0))
            print(f"kept {dst} ({dst.stat().st_size / 1e3:.0f} kB)")
            n += 1
    return n


def restore(runs_dir: Path, overwrite: bool, kept: Path = KEPT) -> int:
    """Write each kept ``results.json.gz`` back to ``runs_dir`` where no results.json is there."""
    n = 0
    for gz in sorted(kept.rglob("results.json.gz")):
        rel = gz.parent.relative_to(kept)
        dst = runs_dir / rel / "results.json"
        if dst.exists() and not overwrite:
            print(f"have {dst}")
            continue
        raw = gzip.decompress(gz.read_bytes())
        json.loads(raw)
        write_bytes(dst, raw)
        print(f"restored {dst}")
        n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    """Command line: ``pack``, ``restore`` or ``list`` (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["pack", "restore", "list"])
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "reproduce")
    ap.add_argument("--kept-dir", type=Path, default=KEPT, help="where packed results live")
    ap.add_argument("--table", help="pack: the table (e.g. pad-table2)")
    ap.add_argument("--data", help="pack: the dataset (e.g. games)")
    ap.add_argument("--rows", help="pack: comma list of rows (default: every finished row)")
    ap.add_argument("--overwrite", action="store_true", help="restore: replace existing results.json")
    args = ap.parse_args(argv)
    if args.action == "pack":
        if not args.table or not args.data:
            ap.error("pack needs --table and --data")
        rows = [r for r in (args.rows or "").split(",") if r] or None
        print(f"{pack(args.runs_dir, args.table, args.data, rows, args.kept_dir)} seed runs kept under {args.kept_dir}")
    elif args.action == "restore":
        print(f"{restore(args.runs_dir, args.overwrite, args.kept_dir)} seed runs restored under {args.runs_dir}")
    else:
        for gz in sorted(args.kept_dir.rglob("results.json.gz")):
            print(gz.parent.relative_to(args.kept_dir))


if __name__ == "__main__":
    main()
