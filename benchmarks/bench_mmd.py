"""Time and peak memory of MK-MMD forward + backward (padrec vs. explicit pairwise differences).

Each (method, n) is measured in two fresh subprocesses:

* time: median (and min) wall seconds of ``--repeats`` forward + backward passes after one warm-up,
  plus the process CPU seconds per pass (less sensitive to other jobs sharing the cores);
* memory: one forward + backward; peak = growth of the resident-set high-water mark
  (``resource.getrusage(...).ru_maxrss``) from just before the loss call, so it covers the forward
  temporaries, the saved graph and the backward. This subprocess runs with
  ``MALLOC_MMAP_THRESHOLD_=1048576`` so that every tensor buffer ≥ 1 MiB is its own mmap and is
  returned to the OS when freed: the high-water mark then tracks live tensors. (With glibc's default
  dynamic threshold, freed blocks up to 32 MiB stay in the heap and the RSS peak reads 3-4x higher;
  ``--default-malloc`` measures that instead.)

Methods:
  gaussian        padrec ``mk_mmd`` (default Gaussian MK-MMD, release estimator)
  laplacian       padrec ``mk_mmd(kernel="laplacian")`` (cdist forward, chunked backward)
  laplacian_cdist Laplacian MK-MMD through ``torch.cdist(p=1)`` with its own autograd backward
  naive           Gaussian MK-MMD from an explicit (2n × 2n × d) difference tensor, as the release's
                  kernel does; only run where it fits (see ``--naive-max-n``)

Usage:
  python benchmarks/bench_mmd.py                       # n = 1300, 2600; d = 128; float32; CPU
  python benchmarks/bench_mmd.py --sizes 650 1300 --methods gaussian naive
  python benchmarks/bench_mmd.py --methods gaussian          # the PAD default only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

METHODS = ("gaussian", "laplacian", "laplacian_cdist", "naive")


def _naive_gaussian(x: torch.Tensor, y: torch.Tensor, exponents=(-3, -2, -1, 0, 1)) -> torch.Tensor:
    """Release-style MK-MMD: pooled squared distances from explicit differences (2n × 2n × d)."""
    n = x.shape[0]
    z = torch.cat([x, y])
    d2 = ((z.unsqueeze(0) - z.unsqueeze(1)) ** 2).sum(2)
    base = d2.detach().mean()
    k = sum(torch.exp(-d2 / (2.0 * 2.0**e * base)) for e in exponents)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    off = kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()
    return off / (n * (n - 1)) - 2.0 * kxy.sum() / (n * n) + 2.0 / (n - 1)


def _laplacian_cdist(x: torch.Tensor, y: torch.Tensor, exponents=(-3, -2, -1, 0, 1)) -> torch.Tensor:
    """Laplacian MK-MMD with torch.cdist(p=1) and torch's own cdist backward."""
    n = x.shape[0]
    dxx, dyy, dxy = torch.cdist(x, x, p=1.0), torch.cdist(y, y, p=1.0), torch.cdist(x, y, p=1.0)
    base = ((dxx.sum() + dyy.sum() + 2 * dxy.sum()) / (4.0 * n * n)).detach()

    def ksum(dist: torch.Tensor) -> torch.Tensor:
        return sum(torch.exp(-dist / (2.0**e * base)) for e in exponents)

    kxx, kyy, kxy = ksum(dxx), ksum(dyy), ksum(dxy)
    off = kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()
    return off / (n * (n - 1)) - 2.0 * kxy.sum() / (n * n) + 2.0 / (n - 1)


def _loss_fn(method: str):
    from padrec.losses.alignment import mk_mmd

    if method == "gaussian":
        return lambda x, y: mk_mmd(x, y)
    if method == "laplacian":
        return lambda x, y: mk_mmd(x, y, kernel="laplacian")
    if method == "laplacian_cdist":
        return _laplacian_cdist
    if method == "naive":
        return _naive_gaussian
    raise ValueError(method)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_one(method: str, n: int, d: int, repeats: int, dtype: str, mode: str) -> dict:
    """Measure one configuration in this process (mode "time" or "memory"); returns a dict of figures."""
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    x = torch.randn(n, d, dtype=dt, requires_grad=True)
    y = (torch.randn(n, d, dtype=dt) + 0.5).requires_grad_(True)
    fn = _loss_fn(method)
    before = _maxrss_mib()
    wall, cpu = [], []
    value = float("nan")
    for i in range(1 if mode == "memory" else repeats + 1):
        x.grad = y.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        loss = fn(x, y)
        loss.backward()
        t1, c1 = time.perf_counter(), time.process_time()
        value = float(loss.detach())
        if i > 0 or mode == "memory":
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
    return {
        "method": method,
        "n": n,
        "d": d,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "cpu_s": statistics.median(cpu),
        "peak_mib": _maxrss_mib() - before,
        "value": value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1300, 2600], help="rows per side (n)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--naive-max-n", type=int, default=650, help="skip 'naive' above this n (memory)")
    parser.add_argument("--default-malloc", action="store_true", help="memory run without MALLOC_MMAP_THRESHOLD_")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        method, n, mode = args.one
        print(json.dumps(run_one(method, int(n), args.dim, args.repeats, args.dtype, mode)))
        return

    rows = []
    sizes = sorted(set(args.sizes) | ({args.naive_max_n} if "naive" in args.methods else set()))
    for n in sizes:
        for method in args.methods:
            if method == "naive" and n > args.naive_max_n:
                continue
            if method != "naive" and n not in args.sizes:
                continue
            result = {}
            for mode in ("time", "memory"):
                env = dict(os.environ)
                if mode == "memory" and not args.default_malloc:
                    env["MALLOC_MMAP_THRESHOLD_"] = "1048576"
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    method,
                    str(n),
                    mode,
                    "--dim",
                    str(args.dim),
                    "--repeats",
                    str(args.repeats),
                    "--dtype",
                    args.dtype,
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
                result[mode] = json.loads(out.strip().splitlines()[-1])
            row = dict(result["time"])
            row["peak_mib"] = result["memory"]["peak_mib"]
            rows.append(row)

    threads = rows[0]["threads"] if rows else "?"
    print(f"MK-MMD forward+backward, d={args.dim}, {args.dtype}, CPU, torch threads={threads}")
    print(f"{'method':<16} {'n/side':>7} {'median s':>9} {'min s':>8} {'CPU s':>7} {'peak MiB':>9} {'value':>10}")
    for r in rows:
        print(
            f"{r['method']:<16} {r['n']:>7} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['cpu_s']:>7.2f} "
            f"{r['peak_mib']:>9.1f} {r['value']:>10.6f}"
        )


if __name__ == "__main__":
    main()
