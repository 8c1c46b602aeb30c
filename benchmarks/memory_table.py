"""Peak resident memory of every benchmark result (issue 16, target 5).

Walks ``benchmarks/results/**/*.json`` and, for each file, collects every recorded peak
resident memory (keys ``peak_rss_mb``, ``peak_rss_gib``, ``rss_mb`` per epoch, and the
serving benchmarks' ``server/peak_rss_mb``), then prints one Markdown row per file: the largest
peak in MiB, how many rows carry one, and the files that record none (analyses of saved runs
whose training runs recorded their own, or results from before the benchmark recorded memory).

    python benchmarks/memory_table.py                       # the table
    python benchmarks/memory_table.py --out /tmp/memory.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

MIB_KEYS = {"peak_rss_mb", "rss_mb", "server_rss_mb", "peak_rss_mb_usr_bin_time", "training_runs_peak_rss_mb"}
GIB_KEYS = {"peak_rss_gib"}


def peaks(obj: object) -> list[float]:
    """Every peak-memory figure (MiB) found anywhere inside a decoded JSON value."""
    found: list[float] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            scale = 1.0 if key in MIB_KEYS else 1024.0 if key in GIB_KEYS else None
            if scale is None:
                found += peaks(value)
                continue
            found += [v * scale for v in _numbers(value)]
    elif isinstance(obj, list):
        for value in obj:
            found += peaks(value)
    return found


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    return []


def table(results: Path = RESULTS) -> list[dict]:
    """One dict per result file: ``file``, ``rows`` (figures found), ``peak_mib`` (max or None)."""
    rows = []
    for path in sorted(results.rglob("*.json")):
        try:
            found = peaks(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}: not valid JSON ({exc})") from exc
        rows.append(
            {
                "file": str(path.relative_to(results)),
                "rows": len(found),
                "peak_mib": round(max(found), 1) if found else None,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = table(args.results)
    print("| result | figures | peak resident MiB |\n|---|---|---|")
    for r in rows:
        peak = f"{r['peak_mib']:,.0f}" if r["peak_mib"] is not None else "— (none recorded)"
        print(f"| `{r['file']}` | {r['rows']} | {peak} |")
    missing = sum(r["peak_mib"] is None for r in rows)
    print(f"\n{len(rows) - missing} of {len(rows)} result files record peak memory.")
    if args.out:
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
