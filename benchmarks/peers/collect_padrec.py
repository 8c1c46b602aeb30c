"""padrec's side of the peer benchmark: one run folder + its ``/usr/bin/time -v`` log → one JSON.

The peers' runners write their own result files; padrec's side is an ordinary
``padrec train`` run under ``/usr/bin/time -v``. This script turns that run's
``results.json`` into the benchmark's record: per-user arrays dropped (lists longer than
``--max-list``), the wall time and maximum resident set size parsed from the time log, the CPU
model and the load averages the chain recorded before and after.

    python3 benchmarks/peers/collect_padrec.py --run runs/chain3/padrec_fast \\
        --time-log runs/chain3/padrec.log --load-before "1.5 1.6 1.5" --load-after "1.6 1.6 1.5" \\
        --out benchmarks/results/peer_padrec_beauty_amd.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner_common import cpu_model  # noqa: E402


def parse_time_log(text: str, source: str = "time log") -> dict:
    """Wall seconds and max RSS (MiB) from GNU ``/usr/bin/time -v`` output."""
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([0-9:.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if wall is None or rss is None:
        raise SystemExit(f"{source}: no '/usr/bin/time -v' summary (Elapsed wall clock / Maximum resident set size)")
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return {"wall_seconds": round(seconds, 1), "max_rss_mb": int(rss.group(1)) / 1024}


def strip_long_lists(obj: object, max_list: int) -> object:
    """The same JSON value with every list longer than ``max_list`` removed (per-user arrays)."""
    if isinstance(obj, dict):
        return {
            k: strip_long_lists(v, max_list) for k, v in obj.items() if not (isinstance(v, list) and len(v) > max_list)
        }
    if isinstance(obj, list):
        return [strip_long_lists(v, max_list) for v in obj]
    return obj


def _loads(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split()[:3]]
    except ValueError as exc:
        raise SystemExit(f"{name}: expected three numbers like '1.5 1.6 1.5', got {text!r}") from exc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="the padrec run folder (holds results.json)")
    ap.add_argument("--time-log", type=Path, required=True, help="file holding the /usr/bin/time -v output")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write (atomically)")
    ap.add_argument("--command", default=None, help="the command that was timed, recorded verbatim")
    ap.add_argument("--benchmark", default="issue 16 target 2: padrec beside the peers on the same machine")
    ap.add_argument("--load-before", default=None, help="load averages before the run, e.g. '1.5 1.6 1.5'")
    ap.add_argument("--load-after", default=None, help="load averages after the run")
    ap.add_argument("--max-list", type=int, default=1000, help="drop lists longer than this (per-user arrays)")
    args = ap.parse_args()

    results_path = args.run / "results.json"
    if not results_path.is_file():
        raise SystemExit(f"{results_path}: not found (is --run a finished padrec run folder?)")
    try:
        record = json.loads(results_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{results_path}: not valid JSON ({exc})") from exc
    record = strip_long_lists(record, args.max_list)
    record["benchmark"] = args.benchmark
    if args.command:
        record["command"] = args.command
    record["usr_bin_time"] = parse_time_log(args.time_log.read_text(encoding="utf-8"), str(args.time_log))
    record["machine"] = {
        "cpu": cpu_model() or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "load_average_before": _loads(args.load_before, "--load-before"),
        "load_average_after": _loads(args.load_after, "--load-after"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(
        f"{args.out}: wall {record['usr_bin_time']['wall_seconds']} s, "
        f"max RSS {record['usr_bin_time']['max_rss_mb']:.0f} MiB, cpu {record['machine']['cpu']}"
    )


if __name__ == "__main__":
    main()
