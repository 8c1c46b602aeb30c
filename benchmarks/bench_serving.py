"""Latency, throughput, memory and stability of ``padrec serve`` (the HTTP service), measured
from outside the server process.

Subcommands (each prints a table and writes one JSON file atomically to benchmarks/results/):

``latency RUN_DIR [RUN_DIR ...]``
    Per run directory: starts ``python -m padrec serve RUN_DIR --host 127.0.0.1 --port P
    --threads T`` as a subprocess (a free loopback port; ready when ``GET /health`` answers),
    sends --warmup unrecorded requests, then for every --concurrency C drives ``POST
    /recommend`` (k 10, explain true) closed-loop: C workers, each with its own keep-alive
    connection (httpx ``AsyncClient`` limited to one connection, on one asyncio/uvloop event
    loop in this process, never in the server's), each sending its next request when the
    previous one is answered, until --requests requests or --duration-s seconds, whichever
    comes first. Histories are --histories real item ids of the run's catalogue
    (``serving.json`` ``item_ids``), lengths uniform in 1..max_len, items drawn with the
    run's training popularity (``item_stats.train_frequency`` + 1), fixed seed, cycled.
    Per row: client-side latency p50/p95/p99/mean/max (send to full response, ms), throughput
    (answered 200s per second of the row), errors (any non-200 or transport error, by kind),
    the server's own ``latency_ms`` of each answer (p50/p99: the model's part; the rest is
    HTTP, JSON, validation and queueing), server and client CPU ms per request (the client
    shares the machine's cores), the load average before and after. Per server: start-up
    seconds, peak RSS (``VmHWM``, includes loading) and final RSS. One ``GET /health`` row at
    concurrency 1 gives the floor of the HTTP stack without a model. After the server stops,
    the same histories through ``Recommender.recommend`` in this process (no HTTP): wall and
    ``latency_ms`` p50/p95/p99.

``synthetic``
    The top-k stage over a synthetic catalogue of --items items (too large to train): an
    (N+1)×(E·D) float32 item matrix with PAD's layout (E expert blocks of D columns). Items
    belong to --clusters categories (0: 0.55·sqrt(N), a fixed ratio to the IVF index's
    ~4·sqrt(N) lists); per expert block an item is its category centre plus Gaussian noise of
    relative size --spread whose standard deviation along column j falls as (j+1)^-a
    (a = --noise-decay: real item vectors have few dominant directions, and graph search
    depends on that), scaled to unit length, then times a norm that follows its Zipf
    popularity rank r (norm = (N/r)^--norm-exponent) and a per-item expert weight
    (Dirichlet(2), mean 1: PAD's gate folded in). A query is, per block, the centre of a
    category drawn by popularity plus the same noise. Row 0 is padding (zeros, never
    returned). The defaults (spread 2.6, decay 0.7, exponent -0.1) are fitted to
    ``runs/dev/pad1`` at its own size (8,347 items): its HNSW recall@10 over efSearch 16..256
    (real 0.66 0.77 0.86 0.94 0.97, synthetic 0.66 0.79 0.88 0.94 0.97), its norm spread and
    its log-log norm-popularity slope (-0.10: PAD's gate gives cold items the long
    text-expert vectors). No setting of the two noise knobs reproduces its IVF curve as well:
    over nprobe 1..32 real 0.15 0.23 0.34 0.45 0.57 0.73, synthetic 0.16 0.29 0.46 0.67 0.89
    0.97, so the synthetic IVF recall is optimistic from nprobe 4 on; with isotropic noise
    (--noise-decay 0, the earlier catalogue) IVF matches (0.21 .. 0.72) but HNSW finds
    almost nothing (0.06 .. 0.28), far below the real 0.66 .. 0.97. --calibrate RUN repeats
    the comparison for any run, for each --kinds index (``calibration``); --fit-decay then
    bisects --noise-decay to the run's HNSW curve and --fit-spread (after it) --spread to its
    IVF curve, each on the mean recall over the curve, and the fitted values are used for
    everything after (--fit-spread is of use with --noise-decay 0; from decay ~0.5 on the
    IVF curve barely moves with the spread and the fit runs to its bound). How the
    structure scales from the run's size to N is an assumption (categories ~ sqrt(N), the
    same noise spectrum), so the ANN recall at 1M is an estimate; the latency and memory
    figures barely depend on it.
    Measures: exact top-k (one matmul, then ``Recommender._exact_top`` itself: non-finite and
    padding scores to -inf, ``torch.topk``) one query at a time at each --threads-list value;
    then per --kinds (hnsw, ivf; each built, timed and freed before the next) a
    :class:`padrec.serving.ann.AnnIndex` built with max(--threads-list) threads (hnsw:
    --hnsw-m, --ef-construction, AnnConfig's 32 and 80 by default; ivf: AnnConfig's lists):
    build wall and CPU seconds, RSS increase and peak, the index's own size (hnsw: vectors
    with the extra column, graph links, slot map), and its latency p50/p95/p99 and recall@10
    against exact top-k at each --ef-search (hnsw) or --nprobe (ivf) value, through
    ``Recommender._ann_top`` itself (the index's search, then the exact rescoring of its
    hits; recall cross-checked with :func:`padrec.serving.ann.recall_at_k` on the first 20
    queries). With --run, also end to end over HTTP: a server subprocess (this script's
    internal ``serve-synthetic`` command: the same ``create_app`` and ``uvicorn.run`` as
    ``padrec serve``) serves a Recommender whose method is the run's trained method (its
    backbones compute the query from a real history, as in production) with the item matrix
    replaced by the synthetic one (ids beyond the run's are ``syn-<i>``), once with exact
    top-k (--http-modes exact) and once with the ANN index (ann: --http-ann-kind, hnsw by
    default, at --http-ef-search or --http-nprobe, built at start-up with --http-threads
    threads as ``padrec serve --threads`` does, so its start-up time includes the build);
    then the latency rows as above at --http-concurrency. HTTP recall is not measured (real
    queries against synthetic items mean nothing); the stage's recall is. The server holds
    the matrix, the ANN index (a copy) and a catalogue of N ids and titles.

``soak RUN_DIR``
    A ``padrec serve`` subprocess under a fixed request rate (--rate per second, open loop:
    request i is due at i/rate; at most --concurrency in flight, a late request is sent when a
    connection frees and its lag is reported) for --minutes, plus a ``POST /items`` of
    --items-batch new items (new ids, titles made from catalogue titles) every
    --items-every-s seconds (one unrecorded ``POST /items`` first loads the text encoder),
    with about 10% of histories ending in an added item once there are some. Samples the
    server's RSS (``VmRSS``) every second. Reports start / end / peak RSS, the RSS slope over
    the second half (least squares, MB/min; added items grow the tables legitimately: the
    number added is reported), requests, errors, p50/p99 per --window-s window (60 s: per
    minute) and overall, and the schedule lag.

Clients (--client): ``httpx`` (the default: httpx ``AsyncClient``) costs this process about
1.5-2 ms of CPU per request, which on 2 cores is taken from the server and adds to every
client-side figure; ``raw`` (:class:`RawClient`, a minimal HTTP/1.1 keep-alive client on
asyncio streams, about 0.1-0.3 ms per request) separates the service from the client.
``--client httpx,raw`` measures both, row by row, against the same server.
--server-env KEY=VALUE sets the server's environment (e.g. ``MALLOC_MMAP_THRESHOLD_=1048576``
to see how much of the soak's RSS growth is the C allocator keeping freed tables).

Everything is bounded (request counts and time limits; servers are stopped, killed if they
do not stop, also on SIGTERM or Ctrl-C), binds loopback only and is seeded (--seed).
Progress bars show rate and ETA. Run it alone on the machine: the client and the server
share the cores (2 here), so the client's CPU per request is reported beside the server's,
and every row records the load average before and after.

Exact commands (the measurement, about 10 + 18 + 2×11 minutes; results in
benchmarks/results/; RUN is the zero-shot PAD run, by default
runs/bench/zero_shot/pad_full_prime_pantry from benchmarks/zero_shot_items.py):
  python benchmarks/bench_serving.py latency runs/dev/pad1 runs/bench/zero_shot/pad_full_prime_pantry \\
      --concurrency 1,8,32 --requests 3000 --duration-s 60 --warmup 200 --threads 1 --client httpx,raw
  python benchmarks/bench_serving.py synthetic --items 1000000 --dim 64 --experts 3 --queries 200 \\
      --threads-list 1,2 --kinds hnsw,ivf --ef-search 32,64,128,256,512 --nprobe 8,16,32,64 \\
      --calibrate runs/bench/zero_shot/pad_full_prime_pantry --fit-decay \\
      --run runs/bench/zero_shot/pad_full_prime_pantry --http-ann-kind hnsw --http-ef-search 128 \\
      --http-concurrency 1,8,32 --http-requests 500 --http-duration-s 30 --client httpx,raw
  python benchmarks/bench_serving.py soak runs/bench/zero_shot/pad_full_prime_pantry --minutes 10 \\
      --rate 50 --concurrency 8 --items-every-s 5 --items-batch 2
  python benchmarks/bench_serving.py soak runs/bench/zero_shot/pad_full_prime_pantry --minutes 10 \\
      --rate 50 --concurrency 8 --items-every-s 5 --items-batch 2 \\
      --server-env MALLOC_MMAP_THRESHOLD_=1048576 --out benchmarks/results/serving_soak_mmap_threshold.json
The synthetic run's parts, estimated on this 2-core machine: calibration ~1 min, catalogue
and exact rows ~1 min, the HNSW build at 1M ~3.5 min with 2 threads (≈360 CPU s: measured
57 / 126 CPU s at 200k / 400k items, growing ~n^1.15), IVF build ~2 min, the HTTP exact
server ~4 min of rows, the HTTP ANN server ~6 min to start (its HNSW build on 1 thread)
plus ~1 min of rows. The run dirs have fewer items than --ann-threshold (200,000), so
latency and soak serve exact top-k unless given --ann-threshold; their --ann-kind,
--ann-ef-search and --ann-nprobe pass through to ``padrec serve``.

Quick checks (tiny settings):
  python benchmarks/bench_serving.py latency runs/dev/pad1 --requests 200 --concurrency 1,4 \\
      --client httpx,raw --out /tmp/serving_latency_dev.json
  python benchmarks/bench_serving.py latency runs/dev/pad1 --requests 100 --concurrency 1 \\
      --ann-threshold 1000 --ann-kind hnsw --ann-ef-search 64 --out /tmp/serving_latency_dev_ann.json
  python benchmarks/bench_serving.py synthetic --items 50000 --queries 30 --calibrate runs/dev/pad1 \\
      --fit-decay --run runs/dev/pad1 --http-concurrency 1,8 --http-requests 100 --out /tmp/serving_synthetic_dev.json
  python benchmarks/bench_serving.py soak runs/dev/pad1 --minutes 0.5 --rate 20 --window-s 10 \\
      --out /tmp/serving_soak_dev.json
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import itertools
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HOST = "127.0.0.1"
JSON_HEADERS = {"content-type": "application/json"}
K = 10


# --- small helpers --------------------------------------------------------------------------
def ints(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32] (argparse type)."""
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got '{text}'")
    return out


def client_kinds(text: str) -> list[str]:
    """'httpx,raw' -> ['httpx', 'raw'] (argparse type)."""
    out = [x.strip() for x in text.split(",") if x.strip()]
    if not out or any(x not in ("httpx", "raw") for x in out):
        raise argparse.ArgumentTypeError(f"expected httpx and/or raw, got '{text}'")
    return out


def http_modes(text: str) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    if not out or any(x not in ("exact", "ann") for x in out):
        raise argparse.ArgumentTypeError(f"expected exact and/or ann, got '{text}'")
    return out


def env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key, value


def positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        v = kind(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
        return v

    return parse


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def proc_mb(pid: int, key: str) -> float | None:
    """``key`` (VmRSS, VmHWM) of process ``pid`` in MB, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss() -> None:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5); best effort."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/mean/max (ms) and count of ``values``."""
    if not len(values):
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": int(a.size),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(a.mean()), 3),
        "max": round(float(a.max()), 3),
    }


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically (a temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def environment() -> dict[str, Any]:
    import torch

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = None
    import httpx

    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, *sys.argv],
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": faiss_version,
        "httpx": httpx.__version__,
        "client_loop": "uvloop" if _uvloop() is not None else "asyncio",
        "loadavg_start": loadavg(),
    }


def _uvloop():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def run_async(coro):
    """Run ``coro`` on a uvloop event loop when installed (less client overhead), else asyncio."""
    uv = _uvloop()
    with asyncio.Runner(loop_factory=uv.new_event_loop if uv is not None else None) as runner:
        return runner.run(coro)


def console():
    from rich.console import Console

    con = Console()
    if not con.is_terminal:  # a log file: wide enough for the tables
        con = Console(width=200)
    return con


def progress_bar():
    """A rich progress bar with completed/total, rate and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:7.1f}/s" if task.speed else "      ?/s")

    class Eta(TimeRemainingColumn):
        """Time left by the count or by the task's ``deadline`` field (monotonic), whichever is sooner."""

        def render(self, task) -> Text:
            deadline = task.fields.get("deadline")
            left = task.time_remaining
            if deadline is not None and not task.finished:
                by_time = max(0.0, deadline - time.monotonic())
                left = by_time if left is None else min(left, by_time)
            if task.finished or left is None:
                return super().render(task)
            return Text(time.strftime("%H:%M:%S", time.gmtime(left)), style="progress.remaining")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        Eta(),
        refresh_per_second=4,
        transient=False,
    )


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


# --- the server subprocess -------------------------------------------------------------------
_LIVE: list[Server] = []


def _stop_all() -> None:
    for s in list(_LIVE):
        s.stop()


atexit.register(_stop_all)


class Server:
    """A server subprocess on a free loopback port: ``cmd`` + ``--port P``.

    Its output goes to a log file (shown when it fails to start)."""

    def __init__(
        self, cmd: list[str], name: str, startup_timeout_s: float = 300.0, env: dict[str, str] | None = None
    ) -> None:
        self.cmd, self.name, self.startup_timeout_s = cmd, name, startup_timeout_s
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.health: dict[str, Any] = {}
        self.startup_s = 0.0
        self.log_path = Path(tempfile.mkstemp(prefix="bench_serving_", suffix=".log")[1])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Server:
        import httpx

        for attempt in range(3):  # the free port may be taken between probing and binding
            self.port = free_port()
            t0 = time.perf_counter()
            log = self.log_path.open("w")
            self.proc = subprocess.Popen(
                [*self.cmd, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env={**os.environ, **self.env},
                start_new_session=True,  # a Ctrl-C reaches this script, which stops the server
            )
            log.close()
            _LIVE.append(self)
            deadline = t0 + self.startup_timeout_s
            with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
                while time.perf_counter() < deadline and self.proc.poll() is None:
                    try:
                        r = client.get("/health")
                        if r.status_code == 200:
                            self.health = r.json()
                            self.startup_s = time.perf_counter() - t0
                            return self
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.2)
            log_text = self.log_path.read_text(errors="replace")
            self.stop()
            if "address already in use" in log_text.lower() and attempt < 2:
                continue
            tail = "\n".join(log_text.splitlines()[-30:])
            raise RuntimeError(
                f"{self.name}: server did not answer /health within {self.startup_timeout_s:.0f} s "
                f"(command: {' '.join(self.cmd)}); log tail:\n{tail}"
            )
        raise AssertionError("unreachable")

    def memory(self) -> dict[str, Any]:
        return {
            "peak_rss_mb": proc_mb(self.pid, "VmHWM"),
            "rss_mb": proc_mb(self.pid, "VmRSS"),
            "env": self.env,
            "log": str(self.log_path),
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self in _LIVE:
            _LIVE.remove(self)


def serve_command(run_dir: str, threads: int, args: argparse.Namespace) -> list[str]:
    """``padrec serve`` with the ANN options of ``args`` that were given (the rest: its defaults)."""
    cmd = [sys.executable, "-m", "padrec", "serve", str(run_dir), "--host", HOST, "--threads", str(threads)]
    for name in ("ann_threshold", "ann_kind", "ann_ef_search", "ann_nprobe"):
        value = getattr(args, name, None)
        if value is not None:
            cmd += ["--" + name.replace("_", "-"), str(value)]
    return cmd + ["--log-level", "warning"]


# --- requests --------------------------------------------------------------------------------
@dataclass
class Workload:
    """Histories (internal ids) and their request bodies (raw ids, JSON bytes)."""

    histories: list[list[int]]
    bodies: list[bytes]
    item_ids: list[str]
    titles: list[str]
    max_len: int


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "serving.json"
    if not path.exists():
        raise SystemExit(f"{run_dir}: no serving.json (not a finished run directory?)")
    meta = json.loads(path.read_text())
    if not meta.get("item_ids") or not meta.get("titles"):
        raise SystemExit(f"{path}: no item_ids/titles (retrain the run with this padrec version)")
    return meta


def make_workload(meta: dict[str, Any], count: int, seed: int, max_item: int | None = None) -> Workload:
    """``count`` histories of the catalogue: lengths uniform in 1..max_len, items drawn by
    training popularity (+1), from items 1..``max_item`` (default: all)."""
    n = int(meta["num_items"])
    top = min(n, max_item or n)
    max_len = int(meta["max_len"])
    freq = None
    stats = meta.get("item_stats") or {}
    if isinstance(stats.get("train_frequency"), list) and len(stats["train_frequency"]) == n + 1:
        freq = np.asarray(stats["train_frequency"][1 : top + 1], dtype=np.float64) + 1.0
    p = freq / freq.sum() if freq is not None else None
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, size=count)
    item_ids = [str(x) for x in meta["item_ids"]]
    histories, bodies = [], []
    for length in lengths:
        h = (rng.choice(top, size=int(length), p=p) + 1).tolist()
        histories.append(h)
        body = {"history": [item_ids[i] for i in h], "k": K, "explain": True}
        bodies.append(json.dumps(body).encode())
    return Workload(histories, bodies, item_ids, [str(t) for t in meta["titles"]], max_len)


@dataclass
class Sample:
    t: float  # send time, seconds from the start of the row / soak
    latency_ms: float
    status: int | str  # HTTP status or the transport error's class name
    server_ms: float | None = None
    lag_ms: float = 0.0  # open loop: send time minus due time


class RawResponse:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code, self.content = status_code, content

    def json(self) -> Any:
        return json.loads(self.content)


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (one connection; reconnects
    when the server closes it). Costs the client about a tenth of httpx's CPU per request,
    so on a small machine it takes fewer cycles from the server; for a cross-check."""

    def __init__(self, base_url: str, timeout: float) -> None:
        host_port = base_url.split("://", 1)[1]
        self.host, self.port = host_port.rsplit(":", 1)[0], int(host_port.rsplit(":", 1)[1])
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _request(self, method: str, path: str, body: bytes) -> RawResponse:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        if "content-length" not in headers:
            raise ValueError("response without content-length")
        content = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return RawResponse(status, content)

    async def request(self, method: str, path: str, body: bytes = b"") -> RawResponse:
        try:
            return await asyncio.wait_for(self._request(method, path, body), self.timeout)
        except BaseException:
            await self.aclose()  # the connection's state is unknown
            raise

    async def get(self, path: str) -> RawResponse:
        return await self.request("GET", path)

    async def post(self, path: str, content: bytes, headers: dict[str, str] | None = None) -> RawResponse:
        return await self.request("POST", path, content)

    async def aclose(self) -> None:
        if self.writer is not None:
            w, self.writer, self.reader = self.writer, None, None
            w.close()
            try:
                await w.wait_closed()
            except OSError:
                pass


async def send(client, method: str, path: str, body: bytes | None) -> tuple[float, int | str, float | None]:
    """One request: (client-side ms, status or error kind, the answer's latency_ms)."""
    import httpx

    t0 = time.perf_counter()
    try:
        if method == "GET":
            r = await client.get(path)
        else:
            r = await client.post(path, content=body, headers=JSON_HEADERS)
        ms = (time.perf_counter() - t0) * 1000
    except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
        return (time.perf_counter() - t0) * 1000, type(exc).__name__, None
    server_ms = None
    if r.status_code == 200 and path.startswith("/recommend"):
        try:
            server_ms = float(r.json()["latency_ms"])
        except (ValueError, KeyError, TypeError):
            return ms, "bad-body", None
    return ms, r.status_code, server_ms


def clients(base_url: str, count: int, timeout_s: float, kind: str = "httpx") -> list:
    """``count`` clients of one keep-alive connection each: httpx ``AsyncClient`` or :class:`RawClient`."""
    if kind == "raw":
        return [RawClient(base_url, timeout_s) for _ in range(count)]
    import httpx

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=None)
    return [httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) for _ in range(count)]


async def closed_loop(
    base_url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    max_requests: int,
    duration_s: float,
    timeout_s: float,
    on_done: Callable[[], None] | None = None,
    method: str = "POST",
    path: str = "/recommend",
    offset: int = 0,
    client: str = "httpx",
) -> tuple[list[Sample], float]:
    """``concurrency`` workers, each sending its next request when the last is answered,
    until ``max_requests`` in all or ``duration_s``. Returns the samples and the wall time."""
    pool = clients(base_url, concurrency, timeout_s, client)
    samples: list[Sample] = []
    try:
        await asyncio.gather(*(c.get("/health") for c in pool))  # open every connection first
        counter = itertools.count()
        t0 = time.perf_counter()
        deadline = t0 + duration_s

        async def worker(client) -> None:
            while True:
                i = next(counter)
                now = time.perf_counter()
                if i >= max_requests or now >= deadline:
                    return
                body = bodies[(offset + i) % len(bodies)] if method == "POST" else None
                ms, status, server_ms = await send(client, method, path, body)
                samples.append(Sample(now - t0, ms, status, server_ms))
                if on_done is not None:
                    on_done()

        await asyncio.gather(*(worker(c) for c in pool))
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.aclose() for c in pool), return_exceptions=True)
    return samples, wall


def error_kinds(samples: Sequence[Sample]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in samples:
        if s.status != 200:
            out[str(s.status)] = out.get(str(s.status), 0) + 1
    return out


def row_summary(samples: Sequence[Sample], wall: float) -> dict[str, Any]:
    ok = [s for s in samples if s.status == 200]
    kinds = error_kinds(samples)
    server = [s.server_ms for s in ok if s.server_ms is not None]
    return {
        "requests": len(samples),
        "ok": len(ok),
        "errors": sum(kinds.values()),
        "error_kinds": kinds,
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(ok) / wall, 2) if wall > 0 else None,
        "latency_ms": pct([s.latency_ms for s in ok]),
        "server_latency_ms": pct(server),
    }


def load_rows(
    server: Server,
    bodies: Sequence[bytes],
    concurrency: Sequence[int],
    requests: int,
    duration_s: float,
    warmup: int,
    timeout_s: float,
    label: str,
    client_kinds: Sequence[str] = ("httpx",),
) -> dict[str, Any]:
    """Warm-up, then per client kind the GET /health floor and one closed-loop row per concurrency."""
    out: dict[str, Any] = {"health_floor": [], "rows": []}
    offset = 0
    with progress_bar() as bar:
        if warmup:
            task = bar.add_task(f"{label} warm-up", total=warmup, deadline=time.monotonic() + duration_s)
            samples, _ = run_async(
                closed_loop(
                    server.base_url, bodies, 1, warmup, duration_s, timeout_s, lambda: bar.advance(task), offset=offset
                )
            )
            out["warmup"] = {"requests": len(samples), "errors": error_kinds(samples)}
            offset += len(samples)
        for kind in client_kinds:
            n_health = min(requests, 500)
            task = bar.add_task(
                f"{label} ({kind}) GET /health c=1", total=n_health, deadline=time.monotonic() + duration_s
            )
            samples, wall = run_async(
                closed_loop(
                    server.base_url,
                    bodies,
                    1,
                    n_health,
                    duration_s,
                    timeout_s,
                    lambda t=task: bar.advance(t),
                    "GET",
                    "/health",
                    client=kind,
                )
            )
            out["health_floor"].append({"client": kind, "concurrency": 1, **row_summary(samples, wall)})
            for c in concurrency:
                task = bar.add_task(
                    f"{label} ({kind}) POST /recommend c={c}", total=requests, deadline=time.monotonic() + duration_s
                )
                load0, cpu0, ccpu0 = loadavg(), proc_cpu_s(server.pid), time.process_time()
                samples, wall = run_async(
                    closed_loop(
                        server.base_url,
                        bodies,
                        c,
                        requests,
                        duration_s,
                        timeout_s,
                        lambda t=task: bar.advance(t),
                        offset=offset,
                        client=kind,
                    )
                )
                cpu1, ccpu1 = proc_cpu_s(server.pid), time.process_time()
                offset += len(samples)
                row = {"client": kind, "concurrency": c, **row_summary(samples, wall)}
                n = max(1, len(samples))
                row["server_cpu_ms_per_request"] = (
                    round((cpu1 - cpu0) * 1000 / n, 3) if cpu0 is not None and cpu1 is not None else None
                )
                row["client_cpu_ms_per_request"] = round((ccpu1 - ccpu0) * 1000 / n, 3)
                row["loadavg_before"], row["loadavg_after"] = load0, loadavg()
                row["server_rss_mb"] = proc_mb(server.pid, "VmRSS")
                out["rows"].append(row)
    return out


def latency_table(title: str, entries: list[tuple[str, dict[str, Any]]]):
    from rich.table import Table

    t = Table(title=title)
    for col in (
        "run",
        "client",
        "route",
        "c",
        "n",
        "err",
        "req/s",
        "p50",
        "p95",
        "p99",
        "mean",
        "srv p50",
        "srv p99",
        "srv cpu",
        "cli cpu",
        "load1 before→after",
    ):
        t.add_column(col, justify="left" if col in ("run", "client", "route") else "right")
    for name, res in entries:
        rows = [("GET /health", r) for r in res.get("health_floor", [])]
        rows += [("POST /recommend", r) for r in res.get("rows", [])]
        rows.sort(key=lambda x: (x[1]["client"], x[0] != "GET /health"))
        for route, row in rows:
            lat, srv = row["latency_ms"], row["server_latency_ms"]
            before, after = row.get("loadavg_before"), row.get("loadavg_after")
            t.add_row(
                name,
                row["client"],
                route,
                str(row["concurrency"]),
                str(row["requests"]),
                str(row["errors"]),
                fmt(row["throughput_rps"], 1),
                fmt(lat["p50"]),
                fmt(lat["p95"]),
                fmt(lat["p99"]),
                fmt(lat["mean"]),
                fmt(srv["p50"]),
                fmt(srv["p99"]),
                fmt(row.get("server_cpu_ms_per_request")),
                fmt(row.get("client_cpu_ms_per_request")),
                f"{fmt(before[0])}→{fmt(after[0])}" if before and after else "",
            )
    t.caption = (
        "ms; client side: send to full answer; srv: the answer's latency_ms; cpu: CPU ms per request of the "
        "server / this client process"
    )
    return t


# --- latency ---------------------------------------------------------------------------------
def serve_ann_config(args: argparse.Namespace):
    """The :class:`AnnConfig` ``padrec serve`` builds from the ANN options of ``args``."""
    from padrec.serving.ann import AnnConfig

    names = {"ann_threshold": "threshold", "ann_kind": "kind", "ann_ef_search": "ef_search", "ann_nprobe": "nprobe"}
    return AnnConfig(**{k: getattr(args, a) for a, k in names.items() if getattr(args, a, None) is not None})


def in_process(run_dir: str, workload: Workload, threads: int, requests: int, duration_s: float, warmup: int, ann=None):
    """``Recommender.recommend`` of the same histories in this process (no HTTP), with the
    server's ANN settings ``ann``."""
    import torch

    from padrec.serving import Recommender

    t0 = time.perf_counter()
    rec = Recommender.load(run_dir, num_threads=threads, ann=ann)
    load_s = time.perf_counter() - t0
    hs = workload.histories
    for i in range(warmup):
        rec.recommend(hs[i % len(hs)], k=K, explain=True)
    wall, inner = [], []
    deadline = time.perf_counter() + duration_s
    with progress_bar() as bar:
        task = bar.add_task("in-process Recommender.recommend", total=requests, deadline=time.monotonic() + duration_s)
        for i in range(requests):
            if time.perf_counter() >= deadline:
                break
            h = hs[(warmup + i) % len(hs)]
            t = time.perf_counter()
            r = rec.recommend(h, k=K, explain=True)
            wall.append((time.perf_counter() - t) * 1000)
            inner.append(r.latency_ms)
            bar.advance(task)
    return {
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 3),
        "top_k": rec.describe()["top_k"],
        "wall_ms": pct(wall),
        "latency_ms": pct(inner),
    }


def cmd_latency(args: argparse.Namespace) -> None:
    con = console()
    result: dict[str, Any] = {
        "benchmark": "serving latency (padrec serve subprocess, closed-loop httpx client)",
        "environment": environment(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("func", "run_dirs") and not k.startswith("_")},
        "runs": [],
    }
    entries = []
    out = Path(args.out)
    for run_dir in args.run_dirs:
        meta = read_meta(run_dir)
        work = make_workload(meta, args.histories, args.seed)
        con.print(
            f"[bold]{run_dir}[/]: {meta.get('method')} over {meta['num_items']} items, "
            f"{len(work.bodies)} histories (load {loadavg()})"
        )
        server = Server(serve_command(run_dir, args.threads, args), str(run_dir), env=args.server_env)
        server.start()
        try:
            con.print(
                f"  server pid {server.pid} on {server.base_url}: ready in {server.startup_s:.1f} s, "
                f"top-k {server.health.get('top_k')}"
            )
            entry: dict[str, Any] = {
                "run_dir": str(run_dir),
                "method": meta.get("method"),
                "num_items": int(meta["num_items"]),
                "health": server.health,
                "server": {"command": server.cmd, "startup_s": round(server.startup_s, 3)},
            }
            entry.update(
                load_rows(
                    server,
                    work.bodies,
                    args.concurrency,
                    args.requests,
                    args.duration_s,
                    args.warmup,
                    args.timeout_s,
                    Path(run_dir).name,
                    args.client,
                )
            )
            entry["server"].update(server.memory())
        finally:
            server.stop()
        if not args.skip_in_process:
            entry["in_process"] = in_process(
                run_dir,
                work,
                args.threads,
                args.requests,
                args.duration_s,
                min(args.warmup, 200),
                serve_ann_config(args),
            )
        result["runs"].append(entry)
        entries.append((Path(run_dir).name, entry))
        write_json(out, result)  # after every run dir: a failure later keeps what was measured
    con.print(latency_table("POST /recommend through padrec serve", entries))
    from rich.table import Table

    t = Table(title="per server")
    for col in ("run", "items", "startup s", "peak RSS MB", "RSS end MB", "in-proc p50", "in-proc p99", "inner p50"):
        t.add_column(col, justify="left" if col == "run" else "right")
    for name, e in entries:
        ip = e.get("in_process") or {}
        t.add_row(
            name,
            str(e["num_items"]),
            fmt(e["server"]["startup_s"]),
            fmt(e["server"]["peak_rss_mb"], 0),
            fmt(e["server"]["rss_mb"], 0),
            fmt((ip.get("wall_ms") or {}).get("p50")),
            fmt((ip.get("wall_ms") or {}).get("p99")),
            fmt((ip.get("latency_ms") or {}).get("p50")),
        )
    t.caption = "in-proc: Recommender.recommend wall ms in this process, no HTTP; inner: its latency_ms"
    con.print(t)
    con.print(f"wrote {out}")


# --- synthetic catalogue ---------------------------------------------------------------------
def synthetic_catalogue(
    num_items: int,
    dim: int,
    experts: int,
    clusters: int,
    spread: float,
    norm_exponent: float,
    seed: int,
    queries: int = 0,
    noise_decay: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N+1, E·D) float32 item matrix (row 0 zeros), (Q, E·D) queries and the items'
    popularity (Zipf weights by internal id, for drawing queries). See the module docstring.
    ``noise_decay`` a: the noise's standard deviation along column j of a block is ∝ (j+1)^-a,
    scaled so that its expected size stays ``spread`` (a = 0: isotropic noise)."""
    rng = np.random.default_rng(seed)
    n = num_items
    clusters = auto_clusters(n, clusters)
    rank = rng.permutation(n) + 1  # popularity rank of items 1..N
    pop = 1.0 / rank
    norm = (n / rank) ** norm_exponent
    category = rng.integers(0, clusters, size=n)
    gate = rng.gamma(2.0, 1.0, size=(n, experts))
    gate = (gate / gate.sum(1, keepdims=True) * experts).astype(np.float32)  # mean weight 1
    shape = (np.arange(dim) + 1.0) ** -noise_decay
    noise = (shape / np.sqrt((shape**2).mean()) * (spread / math.sqrt(dim))).astype(np.float32)
    items = np.zeros((n + 1, experts * dim), dtype=np.float32)
    centres = []
    chunk = 200_000
    for e in range(experts):
        c = rng.standard_normal((clusters, dim), dtype=np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        centres.append(c)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            v = c[category[a:b]] + rng.standard_normal((b - a, dim), dtype=np.float32) * noise
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            v *= (norm[a:b] * gate[a:b, e]).astype(np.float32)[:, None]
            items[1 + a : 1 + b, e * dim : (e + 1) * dim] = v
    q = np.zeros((queries, experts * dim), dtype=np.float32)
    if queries:
        qrng = np.random.default_rng(seed + 1)
        cats = category[qrng.choice(n, size=queries, p=pop / pop.sum())]
        for e in range(experts):
            v = centres[e][cats] + qrng.standard_normal((queries, dim), dtype=np.float32) * noise
            q[:, e * dim : (e + 1) * dim] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return items, q, pop


def auto_clusters(num_items: int, clusters: int = 0) -> int:
    """``clusters``, or when 0 about 0.55·sqrt(N) (50 categories at 8,347 items, 550 at 1M:
    a fixed ratio to the IVF index's ~4·sqrt(N) lists)."""
    return clusters or max(2, round(CLUSTERS_PER_SQRT_N * math.sqrt(num_items)))


CLUSTERS_PER_SQRT_N = 0.55
KINDS = ("hnsw", "ivf")
# the search setting each kind's calibration curve runs over
CURVES = {"hnsw": ("ef_search", (16, 32, 64, 128, 256)), "ivf": ("nprobe", (1, 2, 4, 8, 16, 32))}


def ann_kinds(text: str) -> list[str]:
    """'hnsw,ivf' -> ['hnsw', 'ivf'] (argparse type)."""
    out = [x.strip() for x in text.split(",") if x.strip()]
    if not out or any(x not in KINDS for x in out) or len(set(out)) < len(out):
        raise argparse.ArgumentTypeError(f"expected hnsw and/or ivf, got '{text}'")
    return out


def set_threads(count: int) -> None:
    """torch's and faiss' OpenMP thread counts (the wheels each bring a libgomp)."""
    import torch

    torch.set_num_threads(count)
    try:
        import faiss

        faiss.omp_set_num_threads(count)
    except ImportError:
        pass


def ann_config(args: argparse.Namespace, kind: str, **extra: Any):
    """The :class:`AnnConfig` of ``kind`` with this benchmark's build settings."""
    from padrec.serving.ann import AnnConfig

    return AnnConfig(
        threshold=1, kind=kind, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, seed=args.seed, **extra
    )


def set_search(index, value: int) -> None:
    """The per-query search setting of an :class:`AnnIndex`: efSearch (hnsw) or nprobe (ivf)."""
    if index.kind == "hnsw":
        index.index.hnsw.efSearch = value
    else:
        index.index.nprobe = min(value, index.nlist)


def exact_top_ids(items, queries):
    import torch

    with torch.inference_mode():
        s = queries @ items.t()
        s[:, 0] = float("-inf")
        return torch.topk(s, K, dim=1).indices


def ann_curve(items, queries, kind: str, args: argparse.Namespace, exact=None) -> dict[str, Any]:
    """recall@K of an :class:`AnnIndex` of ``kind`` (the benchmark's build settings; ivf:
    default lists) against exact top-k over that kind's CURVES setting."""
    from padrec.serving.ann import AnnIndex

    exact = exact_top_ids(items, queries) if exact is None else exact
    index = AnnIndex(items, ann_config(args, kind))
    name, values = CURVES[kind]
    out = []
    for v in values:
        set_search(index, v)
        _, found = index.search(queries, K)
        hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(exact, found))
        out.append(round(hits / (K * len(queries)), 4))
    curve: dict[str, Any] = {name: list(values), f"recall@{K}": out, "mean": round(float(np.mean(out)), 4)}
    if kind == "ivf":
        curve["nlist"] = index.nlist
    return curve


def norm_stats(items, popularity: np.ndarray) -> dict[str, float]:
    """Spread of the item norms and their log-log slope against popularity (items 1..N)."""
    log_norm = items[1:].norm(dim=1).clamp_min(1e-12).log().double().numpy()
    log_pop = np.log(np.asarray(popularity, dtype=np.float64) / np.max(popularity))
    return {
        "log_norm_std": round(float(log_norm.std()), 4),
        "slope_log_norm_vs_log_popularity": round(float(np.polyfit(log_pop, log_norm, 1)[0]), 4),
        "median_norm": round(float(np.exp(np.median(log_norm))), 4),
    }


def bisect(evaluate: Callable[[float], dict[str, Any]], kind: str, lo: float, hi: float, target: float, rising: bool):
    """Bisect a catalogue parameter in [lo, hi] until ``kind``'s mean recall meets ``target``
    (``rising``: recall grows with the parameter). Returns the trace and its closest entry."""
    trace = []
    for _ in range(8):
        mid = (lo + hi) / 2
        r = evaluate(mid)
        trace.append(r)
        above = r["curves"][kind]["mean"] > target
        lo, hi = (lo, mid) if above == rising else (mid, hi)
    return trace, min(trace, key=lambda r: abs(r["curves"][kind]["mean"] - target))


def calibrate(args: argparse.Namespace, con) -> dict[str, Any]:
    """The synthetic catalogue against a real run at the run's size: recall curves of each
    --kinds index (real queries from popularity-drawn histories through the run's backbones)
    and norm statistics; --fit-decay bisects --noise-decay to the run's HNSW curve, then
    --fit-spread bisects --spread to its IVF curve (at that decay), each on the mean recall
    over the curve."""
    import torch

    from padrec.serving import Recommender

    rec = Recommender.load(args.calibrate, num_threads=max(args.threads_list))
    set_threads(max(args.threads_list))
    if rec.factors is None:
        raise SystemExit(f"{args.calibrate}: the method has no score factors")
    meta = read_meta(args.calibrate)
    work = make_workload(meta, max(args.queries, 100), args.seed)
    with torch.inference_mode():
        queries = rec.factors.query(rec._histories(work.histories))
    n = rec.num_items
    freq = np.asarray((meta.get("item_stats") or {}).get("train_frequency") or [1] * (n + 1), dtype=np.float64)
    exact = exact_top_ids(rec.factors.items, queries)
    real: dict[str, Any] = {
        "num_items": n,
        "dim": int(rec.factors.items.shape[1]),
        "curves": {kind: ann_curve(rec.factors.items, queries, kind, args, exact) for kind in args.kinds},
        "norms": norm_stats(rec.factors.items, freq[1 : n + 1] + 1.0),
    }

    def synthetic(spread: float, decay: float, kinds: Sequence[str]) -> dict[str, Any]:
        it, q, pop = synthetic_catalogue(
            n, args.dim, args.experts, args.clusters, spread, args.norm_exponent, args.seed, len(queries), decay
        )
        it_t, q_t = torch.from_numpy(it), torch.from_numpy(q)
        ex = exact_top_ids(it_t, q_t)
        return {
            "spread": round(spread, 4),
            "noise_decay": round(decay, 4),
            "curves": {kind: ann_curve(it_t, q_t, kind, args, ex) for kind in kinds},
            "norms": norm_stats(it_t, pop),
        }

    out: dict[str, Any] = {
        "run": str(args.calibrate),
        "clusters_at_run_size": auto_clusters(n, args.clusters),
        "hnsw_m": args.hnsw_m,
        "ef_construction": args.ef_construction,
        "real": real,
        "synthetic_given": synthetic(args.spread, args.noise_decay, args.kinds),
    }
    if args.fit_decay:  # HNSW recall grows as the noise concentrates in fewer directions
        target = real["curves"]["hnsw"]["mean"]
        trace, best = bisect(lambda d: synthetic(args.spread, d, ["hnsw"]), "hnsw", 0.0, 2.0, target, True)
        out["fit_decay_trace"], out["fitted_noise_decay"] = trace, best["noise_decay"]
        args.noise_decay = best["noise_decay"]
    if args.fit_spread:  # IVF recall falls as the spread grows
        target = real["curves"]["ivf"]["mean"]
        trace, best = bisect(lambda s: synthetic(s, args.noise_decay, ["ivf"]), "ivf", 0.5, 6.0, target, False)
        out["fit_spread_trace"], out["fitted_spread"] = trace, best["spread"]
        args.spread = best["spread"]
    if args.fit_decay or args.fit_spread:
        out["synthetic_fitted"] = synthetic(args.spread, args.noise_decay, args.kinds)
    from rich.table import Table

    rows = [("real " + Path(str(args.calibrate)).name, real)]
    given = out["synthetic_given"]
    rows.append((f"synthetic spread {given['spread']} decay {given['noise_decay']}", given))
    if "synthetic_fitted" in out:
        fitted = out["synthetic_fitted"]
        rows.append((f"synthetic fitted: spread {fitted['spread']} decay {fitted['noise_decay']}", fitted))
    for kind in args.kinds:
        name, values = CURVES[kind]
        what = f"{real['curves'][kind]['nlist']} lists, nprobe" if kind == "ivf" else "efSearch"
        t = Table(title=f"calibration at {n} items: recall@{K} of AnnIndex {kind} vs {what}")
        t.add_column("catalogue")
        for v in values:
            t.add_column(str(v), justify="right")
        for col in ("mean", "log-norm std", "norm~pop slope"):
            t.add_column(col, justify="right")
        for label, r in rows:
            c = r["curves"][kind]
            t.add_row(
                label,
                *[fmt(x, 3) for x in c[f"recall@{K}"]],
                fmt(c["mean"], 3),
                fmt(r["norms"]["log_norm_std"], 3),
                fmt(r["norms"]["slope_log_norm_vs_log_popularity"], 3),
            )
        con.print(t)
    return out


def ann_index_bytes(index) -> int:
    """Memory of an :class:`AnnIndex`'s faiss data: IVF vectors, ids and centroids; HNSW
    vectors (one column more), graph links and levels, and the slot → item map."""
    faiss = __import__("faiss")
    inner = index.index
    if index.kind == "ivf":
        return int(inner.ntotal * (inner.code_size + 8) + inner.nlist * inner.d * 4)
    h = inner.hnsw
    storage = faiss.downcast_index(inner.storage)
    graph = h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4
    return int(inner.ntotal * storage.code_size + graph + index.slot_item.nbytes)


def time_queries(
    fn: Callable[[int], Any], count: int, warmup: int, advance: Callable[[], None]
) -> tuple[list[float], list[Any]]:
    """ms of ``fn(i)`` for i in 0..count-1 after ``warmup`` unrecorded calls, and the results."""
    for i in range(warmup):
        fn(i % count)
    ms, out = [], []
    for i in range(count):
        t = time.perf_counter()
        r = fn(i)
        ms.append((time.perf_counter() - t) * 1000)
        out.append(r)
        advance()
    return ms, out


def exact_top(items, queries, i: int) -> set[int]:
    """Exact top-k of query ``i``: the matmul, then ``Recommender._exact_top`` itself (no
    history, no filters), so the figure follows the service's code."""
    from padrec.serving.recommender import Recommender

    s = queries[i : i + 1] @ items.t()
    _, ids = Recommender._exact_top(None, s, [[]], K, False, None, None)  # type: ignore[arg-type]  # reads no state
    return set(ids[0].tolist())


def ann_top(service, queries, i: int) -> set[int]:
    """ANN top-k of query ``i`` through ``Recommender._ann_top`` itself (the index's search,
    then the exact rescoring of its hits), on a stand-in that holds only what it reads."""
    from padrec.serving.recommender import Recommender

    _, ids = Recommender._ann_top(service, queries[i : i + 1], [[]], K, False, None)
    return set(ids[0].tolist())


def synthetic_stage(args: argparse.Namespace, con) -> dict[str, Any]:
    """The top-k stage: catalogue, exact rows, then per --kinds an index built, timed and
    freed before the next (so each one's memory is its own)."""
    import torch

    from padrec.serving.ann import AnnIndex, recall_at_k

    out: dict[str, Any] = {}
    set_threads(max(args.threads_list))
    rss0 = proc_mb(os.getpid(), "VmRSS")
    t0 = time.perf_counter()
    items_np, q_np, _ = synthetic_catalogue(
        args.items,
        args.dim,
        args.experts,
        args.clusters,
        args.spread,
        args.norm_exponent,
        args.seed,
        args.queries,
        args.noise_decay,
    )
    items, queries = torch.from_numpy(items_np), torch.from_numpy(q_np)
    norms = items[1:].norm(dim=1)
    out["catalogue"] = {
        "num_items": args.items,
        "dim": items.shape[1],
        "clusters": auto_clusters(args.items, args.clusters),
        "spread": args.spread,
        "noise_decay": args.noise_decay,
        "norm_exponent": args.norm_exponent,
        "generate_s": round(time.perf_counter() - t0, 3),
        "matrix_mb": round(items_np.nbytes / 2**20, 1),
        "rss_increase_mb": round((proc_mb(os.getpid(), "VmRSS") or 0) - (rss0 or 0), 1),
        "item_norm": {
            "min": round(float(norms.min()), 3),
            "median": round(float(norms.median()), 3),
            "max": round(float(norms.max()), 3),
        },
    }
    del norms
    con.print(f"catalogue: {out['catalogue']}")

    # exact top-k, one query at a time
    exact_rows: list[dict[str, Any]] = []
    exact_ids: list[set[int]] = []
    with progress_bar() as bar, torch.inference_mode():
        for t in args.threads_list:
            set_threads(t)
            task = bar.add_task(f"exact top-{K}, {t} thread(s)", total=args.queries)
            ms, ids = time_queries(
                lambda i: exact_top(items, queries, i), args.queries, args.warmup, lambda t=task: bar.advance(t)
            )
            exact_ids = exact_ids or ids
            exact_rows.append({"threads": t, "latency_ms": pct(ms), "loadavg_after": loadavg()})
    out["exact"] = exact_rows

    out["ann"] = {}
    sub = min(20, args.queries)
    for kind in args.kinds:
        param, values = ("ef_search", args.ef_search) if kind == "hnsw" else ("nprobe", args.nprobe)
        set_threads(max(args.threads_list))
        gc.collect()
        reset_peak_rss()  # VmHWM from here: this kind's build only
        rss1, hwm1 = proc_mb(os.getpid(), "VmRSS"), proc_mb(os.getpid(), "VmHWM")
        con.print(f"building AnnIndex {kind} over {args.items} items ({max(args.threads_list)} thread(s)) ...")
        load0, cpu0, t0 = loadavg(), time.process_time(), time.perf_counter()
        config = ann_config(args, kind)
        index = AnnIndex(items, config)
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        rss2, hwm2 = proc_mb(os.getpid(), "VmRSS"), proc_mb(os.getpid(), "VmHWM")
        service = _AnnService(index, items)
        rows = []
        with progress_bar() as bar:
            for value in values:
                set_search(index, value)
                recall_check = round(recall_at_k(index, items, queries[:sub], K), 4)
                for t in args.threads_list:
                    set_threads(t)
                    task = bar.add_task(f"ANN {kind} {param} {value}, {t} thread(s)", total=args.queries)
                    ms, found = time_queries(
                        lambda i, s=service: ann_top(s, queries, i),
                        args.queries,
                        args.warmup,
                        lambda t=task: bar.advance(t),
                    )
                    hits = [len(f & e) for f, e in zip(found, exact_ids)]
                    rows.append(
                        {
                            param: value,
                            "threads": t,
                            "latency_ms": pct(ms),
                            f"recall@{K}": round(sum(hits) / (K * len(hits)), 4),
                            f"recall@{K}_first{sub}": round(sum(hits[:sub]) / (K * sub), 4),
                            f"recall@{K}_first{sub}_padrec_recall_at_k": recall_check,
                            "loadavg_after": loadavg(),
                        }
                    )
        entry: dict[str, Any] = {"kind": kind, "param": param}
        if kind == "hnsw":
            entry["index"] = "faiss IndexHNSWFlat, L2 over items augmented to inner-product order"
            entry.update(hnsw_m=config.hnsw_m, ef_construction=config.ef_construction, dim=index.dim + 1)
        else:
            entry["index"] = "faiss IndexIVFFlat, inner product"
            entry.update(nlist=index.nlist, train_size=min(args.items, config.train_size) or args.items)
        entry.update(
            {
                "build_s": round(build_s, 3),
                "build_cpu_s": round(build_cpu_s, 3),
                "build_threads": max(args.threads_list),
                "build_loadavg_before_after": [load0, loadavg()],
                "index_mb": round(ann_index_bytes(index) / 2**20, 1),
                "rss_increase_mb": round((rss2 or 0) - (rss1 or 0), 1),
                "peak_rss_increase_mb": round((hwm2 or 0) - (hwm1 or 0), 1),
                "rows": rows,
            }
        )
        out["ann"][kind] = entry
        con.print(
            f"  {kind}: built in {build_s:.1f} s ({build_cpu_s:.1f} CPU s), index {entry['index_mb']} MB, "
            f"RSS +{entry['rss_increase_mb']} MB"
        )
        del service, index
    return out


class _AnnService:
    """What ``Recommender._ann_top`` reads: the index, the item matrix and the device."""

    def __init__(self, index, items) -> None:
        import torch

        from padrec.methods.base import ScoreFactors

        self.ann, self.device = index, torch.device("cpu")
        self.factors = ScoreFactors(items, lambda h: h, {})


def http_command(args: argparse.Namespace, mode: str) -> list[str]:
    """The ``serve-synthetic`` server of ``mode`` (exact, or ann of --http-ann-kind)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "serve-synthetic", str(args.run)]
    for name in ("items", "dim", "experts", "clusters", "spread", "noise_decay", "norm_exponent", "seed"):
        cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    cmd += ["--threads", str(args.http_threads), "--ann-threshold", "0" if mode == "exact" else "1"]
    cmd += ["--ann-kind", args.http_ann_kind, "--ann-ef-search", str(args.http_ef_search)]
    cmd += ["--ann-nprobe", str(args.http_nprobe), "--hnsw-m", str(args.hnsw_m)]
    return cmd + ["--ef-construction", str(args.ef_construction)]


def cmd_synthetic(args: argparse.Namespace) -> None:
    con = console()
    out = Path(args.out)
    if (args.fit_spread or args.fit_decay) and not args.calibrate:
        raise SystemExit("--fit-spread and --fit-decay need --calibrate RUN")
    for flag, kind in (("--fit-decay", "hnsw"), ("--fit-spread", "ivf")):
        if getattr(args, flag[2:].replace("-", "_")) and kind not in args.kinds:
            raise SystemExit(f"{flag} fits the {kind} curve: add {kind} to --kinds")
    result: dict[str, Any] = {
        "benchmark": "top-k stage over a synthetic PAD-like catalogue (+ HTTP end to end over a real run's backbones)",
        "environment": environment(),
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
    }
    if args.calibrate:
        result["calibration"] = calibrate(args, con)
        result["settings"]["spread_used"] = args.spread
        result["settings"]["noise_decay_used"] = args.noise_decay
        gc.collect()
    result.update(synthetic_stage(args, con))
    gc.collect()
    write_json(out, result)
    synthetic_tables(con, result)

    # end to end over HTTP
    if args.run and args.http_concurrency:
        meta = read_meta(args.run)
        work = make_workload(meta, args.histories, args.seed)
        result["http"] = {"run": str(args.run), "method": meta.get("method"), "modes": []}
        for mode in args.http_modes:
            label = mode if mode == "exact" else f"ann {args.http_ann_kind}"
            con.print(f"[bold]HTTP, {label} top-k[/]: starting the synthetic server (builds the catalogue) ...")
            server = Server(
                http_command(args, mode),
                f"synthetic {label}",
                startup_timeout_s=args.startup_timeout_s,
                env=args.server_env,
            )
            server.start()
            try:
                con.print(
                    f"  server pid {server.pid}: ready in {server.startup_s:.1f} s, top-k "
                    f"{server.health.get('top_k')}, {server.health.get('num_items')} items"
                )
                entry: dict[str, Any] = {
                    "mode": mode,
                    "ann_kind": args.http_ann_kind if mode == "ann" else None,
                    "ef_search": args.http_ef_search if mode == "ann" and args.http_ann_kind == "hnsw" else None,
                    "nprobe": args.http_nprobe if mode == "ann" and args.http_ann_kind == "ivf" else None,
                    "health": server.health,
                    "server": {"command": server.cmd, "startup_s": round(server.startup_s, 3)},
                }
                entry.update(
                    load_rows(
                        server,
                        work.bodies,
                        args.http_concurrency,
                        args.http_requests,
                        args.http_duration_s,
                        args.http_warmup,
                        args.timeout_s,
                        f"synthetic {label}",
                        args.client,
                    )
                )
                entry["server"].update(server.memory())
            finally:
                server.stop()
            result["http"]["modes"].append(entry)
            write_json(out, result)
        con.print(
            latency_table(
                f"HTTP end to end, {args.items} synthetic items",
                [
                    (f"{http_label(e)} (peak RSS {fmt(e['server']['peak_rss_mb'], 0)} MB)", e)
                    for e in result["http"]["modes"]
                ],
            )
        )
    write_json(out, result)
    con.print(f"wrote {out}")


def http_label(entry: dict[str, Any]) -> str:
    if entry["mode"] == "exact":
        return "exact"
    if entry.get("ann_kind") == "ivf":
        return f"ann ivf nprobe {entry['nprobe']}"
    return f"ann hnsw ef {entry['ef_search']}"


def synthetic_tables(con, result: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"top-{K} stage, {result['catalogue']['num_items']} items × {result['catalogue']['dim']} dims")
    for col in ("search", "threads", "p50 ms", "p95 ms", "p99 ms", "mean ms", f"recall@{K}"):
        t.add_column(col, justify="left" if col == "search" else "right")
    for row in result["exact"]:
        lat = row["latency_ms"]
        t.add_row(
            "exact (matmul + topk)",
            str(row["threads"]),
            fmt(lat["p50"]),
            fmt(lat["p95"]),
            fmt(lat["p99"]),
            fmt(lat["mean"]),
            "1",
        )
    captions = []
    for kind, a in result["ann"].items():
        short = "efSearch" if kind == "hnsw" else "nprobe"
        for row in a["rows"]:
            lat = row["latency_ms"]
            t.add_row(
                f"ANN {kind} {short} {row[a['param']]}",
                str(row["threads"]),
                fmt(lat["p50"]),
                fmt(lat["p95"]),
                fmt(lat["p99"]),
                fmt(lat["mean"]),
                fmt(row[f"recall@{K}"], 4),
            )
        what = f"M {a['hnsw_m']}, efConstruction {a['ef_construction']}" if kind == "hnsw" else f"nlist {a['nlist']}"
        captions.append(
            f"{kind} ({what}): built in {a['build_s']:.1f} s ({a['build_cpu_s']:.1f} CPU s, {a['build_threads']} "
            f"threads), index {a['index_mb']} MB, RSS +{a['rss_increase_mb']} MB (peak +{a['peak_rss_increase_mb']} MB)"
        )
    captions.append(f"matrix {result['catalogue']['matrix_mb']} MB; ANN rows include the service's exact rescoring")
    t.caption = "\n".join(captions)
    con.print(t)


def cmd_serve_synthetic(args: argparse.Namespace) -> None:
    """Serve a run's method with its item matrix replaced by a synthetic one (used by
    ``synthetic``; same app and uvicorn call as ``padrec serve``)."""
    import torch
    import uvicorn

    from padrec.methods.base import ScoreFactors
    from padrec.serving import Recommender
    from padrec.serving.ann import AnnConfig
    from padrec.serving.app import create_app

    base = Recommender.load(args.run_dir, num_threads=args.threads)
    if base.factors is None:
        raise SystemExit(f"{args.run_dir}: the method has no score factors (not an inner-product method)")
    base_n = base.num_items
    if args.items < base_n:
        raise SystemExit(f"--items must be at least the run's {base_n} items (histories use them)")
    items_np, _, _ = synthetic_catalogue(
        args.items,
        args.dim,
        args.experts,
        args.clusters,
        args.spread,
        args.norm_exponent,
        args.seed,
        noise_decay=args.noise_decay,
    )
    items = torch.from_numpy(items_np)
    real_query = base.factors.query
    width = base.factors.items.shape[1]
    names = list(base.factors.parts) if len(base.factors.parts) == args.experts else []
    names = names or [f"expert{e}" for e in range(args.experts)]
    parts = {name: slice(e * args.dim, (e + 1) * args.dim) for e, name in enumerate(names)}
    proj = None
    if width != items.shape[1]:  # the run's query width differs: a fixed random projection
        g = torch.Generator().manual_seed(args.seed)
        proj = torch.randn(width, items.shape[1], generator=g) / math.sqrt(width)

    class SyntheticItems(torch.nn.Module):
        """The run's trained method (query side) over the synthetic item matrix."""

        def __init__(self) -> None:
            super().__init__()
            self.base = base.method
            self.register_buffer("items", items, persistent=False)

        @property
        def num_items(self) -> int:
            return int(self.items.shape[0]) - 1

        def score_factors(self) -> ScoreFactors:
            def query(h: torch.Tensor) -> torch.Tensor:
                q = real_query(h)
                return q @ proj if proj is not None else q

            return ScoreFactors(self.items, query, parts)

        def score_all(self, h: torch.Tensor) -> torch.Tensor:
            return self.score_factors().query(h) @ self.items.t()

        def new_items_unsupported(self) -> str:
            return "synthetic catalogue (benchmark)"

    ids = list(base.item_ids) + [f"syn-{i}" for i in range(base_n + 1, args.items + 1)]
    titles = list(base.titles) + [f"Synthetic item {i}" for i in range(base_n + 1, args.items + 1)]
    rec = Recommender(
        SyntheticItems(),  # type: ignore[arg-type]
        base.max_len,
        exclude_history=base.exclude_history,
        item_ids=ids,
        titles=titles,
        ann=AnnConfig(
            threshold=args.ann_threshold,
            kind=args.ann_kind,
            hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction,
            ef_search=args.ann_ef_search,
            nprobe=args.ann_nprobe,
            seed=args.seed,
        ),
        meta={**base.meta, "method": f"{base.meta.get('method')} (synthetic items)"},
    )
    app = create_app(rec)
    print(f"synthetic server: {rec.describe()}", flush=True)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning")


# --- soak ------------------------------------------------------------------------------------
def slope_mb_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    t = np.asarray([p[0] for p in points])
    y = np.asarray([p[1] for p in points])
    if np.ptp(t) <= 0:
        return None
    return round(float(np.polyfit(t, y, 1)[0]) * 60, 3)


def cmd_soak(args: argparse.Namespace) -> None:
    con = console()
    out = Path(args.out)
    meta = read_meta(args.run_dir)
    work = make_workload(meta, args.histories, args.seed)
    duration = args.minutes * 60
    rng = np.random.default_rng(args.seed + 7)
    server = Server(
        serve_command(args.run_dir, args.threads, args),
        args.run_dir,
        env=args.server_env,
    )
    result: dict[str, Any] = {
        "benchmark": "serving soak (fixed rate, POST /items mixed in)",
        "environment": environment(),
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
    }
    server.start()
    try:
        con.print(f"server pid {server.pid} on {server.base_url}: ready in {server.startup_s:.1f} s")
        result["server"] = {"command": server.cmd, "startup_s": round(server.startup_s, 3), "health": server.health}
        result["rss_after_load_mb"] = proc_mb(server.pid, "VmRSS")
        result.update(run_async(soak(server, work, args, duration, rng, con)))
        result["server"].update(server.memory())
    finally:
        server.stop()
    write_json(out, result)
    soak_tables(con, result)
    con.print(f"wrote {out}")


async def soak(server: Server, work: Workload, args: argparse.Namespace, duration: float, rng, con) -> dict[str, Any]:
    import httpx

    base = server.base_url
    added: list[str] = []
    new_counter = itertools.count()

    def items_body() -> tuple[bytes, list[str]]:
        batch = []
        for _ in range(args.items_batch):
            n = next(new_counter)
            title = work.titles[int(rng.integers(1, len(work.titles)))]
            batch.append({"id": f"soak-{args.seed}-{n}", "title": f"{title} (soak {n})"})
        return json.dumps({"items": batch}).encode(), [b["id"] for b in batch]

    # warm-up: requests, then one POST /items (loads the text encoder)
    warm, _ = await closed_loop(base, work.bodies, 1, args.warmup, 60.0, args.timeout_s, client=args.client)
    async with httpx.AsyncClient(base_url=base, timeout=max(args.timeout_s, 300.0)) as c:
        body, ids = items_body()
        ms, status, _ = await send(c, "POST", "/items", body)
        if status == 200:
            added.extend(ids)
    warmup = {"requests": len(warm), "errors": error_kinds(warm), "first_items_post": {"ms": ms, "status": status}}
    con.print(f"warm-up done (first POST /items {ms:.0f} ms, status {status}); soak for {duration:.0f} s ...")

    pool = clients(base, args.concurrency, args.timeout_s, args.client)
    idle: asyncio.Queue = asyncio.Queue()
    for c in pool:
        idle.put_nowait(c)
    await asyncio.gather(*(c.get("/health") for c in pool))
    samples: list[Sample] = []
    item_posts: list[dict[str, Any]] = []
    rss: list[tuple[float, float]] = []
    load: list[tuple[float, list[float]]] = []
    not_sent = 0
    load_before = loadavg()
    t0 = time.perf_counter()
    hard_stop = t0 + duration + args.timeout_s
    stop = asyncio.Event()
    total = int(math.ceil(duration * args.rate))

    def body_for(i: int) -> bytes:
        if added and rng.random() < 0.1:  # a history that ends in an added item
            h = [work.item_ids[x] for x in work.histories[i % len(work.histories)]][-(work.max_len - 1) :]
            h.append(added[int(rng.integers(len(added)))])
            return json.dumps({"history": h, "k": K, "explain": True}).encode()
        return work.bodies[i % len(work.bodies)]

    with progress_bar() as bar:
        task = bar.add_task("soak POST /recommend", total=total)

        async def one(client, body: bytes, due: float) -> None:
            sent = time.perf_counter()
            try:
                ms, status, server_ms = await send(client, "POST", "/recommend", body)
                samples.append(Sample(sent - t0, ms, status, server_ms, (sent - due) * 1000))
            finally:
                idle.put_nowait(client)
                bar.advance(task)

        async def sampler() -> None:
            while not stop.is_set():
                now = time.perf_counter() - t0
                mb = proc_mb(server.pid, "VmRSS")
                if mb is not None:
                    rss.append((now, mb))
                if int(now) % 10 == 0:
                    load.append((round(now, 1), loadavg()))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass

        async def poster() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=args.timeout_s) as c:
                k = 1
                while True:
                    due = t0 + k * args.items_every_s
                    if due - t0 >= duration:
                        return
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=max(0.0, due - time.perf_counter()))
                        return
                    except asyncio.TimeoutError:
                        pass
                    body, ids = items_body()
                    ms, status, _ = await send(c, "POST", "/items", body)
                    item_posts.append({"t": round(time.perf_counter() - t0, 3), "ms": round(ms, 3), "status": status})
                    if status == 200:
                        added.extend(ids)
                    k += 1

        side = [asyncio.create_task(sampler()), asyncio.create_task(poster())]
        inflight: set[asyncio.Task] = set()
        for i in range(total):
            due = t0 + i / args.rate
            now = time.perf_counter()
            if now >= hard_stop:
                not_sent = total - i
                break
            if due > now:
                await asyncio.sleep(due - now)
            try:
                client = await asyncio.wait_for(idle.get(), timeout=max(0.001, hard_stop - time.perf_counter()))
            except asyncio.TimeoutError:
                not_sent = total - i
                break
            t = asyncio.create_task(one(client, body_for(i), due))
            inflight.add(t)
            t.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.wait(inflight, timeout=args.timeout_s)
        wall = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*side)
    await asyncio.gather(*(c.aclose() for c in pool), return_exceptions=True)

    windows = []
    n_win = max(1, int(math.ceil(wall / args.window_s)))
    for w in range(n_win):
        a, b = w * args.window_s, (w + 1) * args.window_s
        ws = [s for s in samples if a <= s.t < b]
        ok = [s.latency_ms for s in ws if s.status == 200]
        if not ws:
            continue
        lat = pct(ok)
        windows.append(
            {
                "from_s": a,
                "requests": len(ws),
                "errors": len(ws) - len(ok),
                "p50_ms": lat["p50"],
                "p99_ms": lat["p99"],
                "rss_mb_end": next((m for t, m in reversed(rss) if t < b), None),
            }
        )
    ok = [s for s in samples if s.status == 200]
    kinds = error_kinds(samples)
    item_errors = [p for p in item_posts if p["status"] != 200]
    rss_vals = [m for _, m in rss]
    half = [(t, m) for t, m in rss if t >= wall / 2]
    return {
        "warmup": warmup,
        "duration_s": round(wall, 3),
        "requests": len(samples),
        "not_sent": not_sent,
        "ok": len(ok),
        "errors": sum(kinds.values()),
        "error_kinds": kinds,
        "throughput_rps": round(len(ok) / wall, 2) if wall > 0 else None,
        "latency_ms": pct([s.latency_ms for s in ok]),
        "latency_from_due_ms": pct([s.latency_ms + s.lag_ms for s in ok]),
        "lag_ms": pct([s.lag_ms for s in samples]),
        "server_latency_ms": pct([s.server_ms for s in ok if s.server_ms is not None]),
        "windows": windows,
        "items_posts": {
            "count": len(item_posts),
            "errors": len(item_errors),
            "error_statuses": sorted({str(p["status"]) for p in item_errors}),
            "items_added": len(added),
            "latency_ms": pct([p["ms"] for p in item_posts if p["status"] == 200]),
        },
        "rss_mb": {
            "start": rss_vals[0] if rss_vals else None,
            "end": rss_vals[-1] if rss_vals else None,
            "peak_sampled": max(rss_vals) if rss_vals else None,
            "slope_second_half_mb_per_min": slope_mb_per_min(half),
            "slope_all_mb_per_min": slope_mb_per_min(rss),
            "samples": [(round(t, 2), round(m, 1)) for t, m in rss],
        },
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "loadavg_samples": load,
    }


def soak_tables(con, r: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"soak: {r['settings']['rate']} req/s for {r['duration_s']:.0f} s")
    for col in ("window from s", "requests", "errors", "p50 ms", "p99 ms", "RSS MB at end"):
        t.add_column(col, justify="right")
    for w in r["windows"]:
        t.add_row(
            fmt(w["from_s"], 0),
            str(w["requests"]),
            str(w["errors"]),
            fmt(w["p50_ms"]),
            fmt(w["p99_ms"]),
            fmt(w["rss_mb_end"], 1),
        )
    con.print(t)
    m, ip = r["rss_mb"], r["items_posts"]
    s = Table(title="soak summary")
    s.add_column("what")
    s.add_column("value", justify="right")
    rows = [
        ("requests (not sent)", f"{r['requests']} ({r['not_sent']})"),
        ("errors", f"{r['errors']} {r['error_kinds'] or ''}"),
        ("throughput req/s", fmt(r["throughput_rps"], 1)),
        ("latency p50 / p99 ms", f"{fmt(r['latency_ms']['p50'])} / {fmt(r['latency_ms']['p99'])}"),
        ("from due time p99 ms", fmt(r["latency_from_due_ms"]["p99"])),
        ("server latency_ms p50 / p99", f"{fmt(r['server_latency_ms']['p50'])} / {fmt(r['server_latency_ms']['p99'])}"),
        ("schedule lag p99 ms", fmt(r["lag_ms"]["p99"])),
        ("POST /items (errors)", f"{ip['count']} ({ip['errors']}), {ip['items_added']} items added"),
        ("POST /items p50 / p99 ms", f"{fmt(ip['latency_ms']['p50'])} / {fmt(ip['latency_ms']['p99'])}"),
        ("RSS after load MB", fmt(r.get("rss_after_load_mb"), 1)),
        ("RSS start / end / peak MB", f"{fmt(m['start'], 1)} / {fmt(m['end'], 1)} / {fmt(m['peak_sampled'], 1)}"),
        ("VmHWM MB", fmt(r["server"].get("peak_rss_mb"), 1)),
        ("RSS slope 2nd half MB/min", fmt(m["slope_second_half_mb_per_min"], 3)),
        ("load before → after", f"{r['loadavg_before']} → {r['loadavg_after']}"),
    ]
    for a, b in rows:
        s.add_row(a, b)
    con.print(s)


# --- command line ----------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark padrec serve: latency, a synthetic 1M-item catalogue, soak.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exact commands" + __doc__.split("Exact commands", 1)[1] if __doc__ else None,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{latency,synthetic,soak}")

    def common(sp: argparse.ArgumentParser, out: str, multi: bool = True) -> None:
        sp.add_argument("--seed", type=int, default=0, help="seed of histories / catalogue (default 0)")
        sp.add_argument("--histories", type=positive(int), default=2000, help="distinct histories, cycled (2000)")
        sp.add_argument("--timeout-s", type=positive(float), default=30.0, help="per-request timeout (30)")
        sp.add_argument("--out", default=str(RESULTS / out), help=f"JSON output (benchmarks/results/{out})")
        sp.add_argument(
            "--server-env",
            type=env_pair,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="an environment variable for the server process (repeatable), e.g. MALLOC_ARENA_MAX=2",
        )
        sp.add_argument(
            "--client",
            **(
                {"type": client_kinds, "default": ["httpx"], "help": "load clients: httpx and/or raw (httpx)"}
                if multi
                else {"choices": ["httpx", "raw"], "default": "httpx", "help": "load client (httpx)"}
            ),
        )

    lat = sub.add_parser(
        "latency",
        help="padrec serve latency/throughput at several concurrencies",
        description="Start padrec serve per run dir and drive POST /recommend closed-loop (see the module docstring).",
    )
    lat.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    lat.add_argument("--concurrency", type=ints, default=[1, 8, 32], help="concurrent clients per row (1,8,32)")
    lat.add_argument("--requests", type=positive(int), default=3000, help="requests per row at most (3000)")
    lat.add_argument("--duration-s", type=positive(float), default=60.0, help="seconds per row at most (60)")
    lat.add_argument("--warmup", type=int, default=200, help="unrecorded requests first (200)")
    lat.add_argument("--threads", type=int, default=1, help="padrec serve --threads (1)")
    lat.add_argument("--ann-threshold", type=int, default=None, help="padrec serve --ann-threshold (its default)")
    lat.add_argument("--ann-kind", choices=["hnsw", "ivf"], default=None, help="padrec serve --ann-kind (its default)")
    lat.add_argument("--ann-ef-search", type=int, default=None, help="padrec serve --ann-ef-search (its default)")
    lat.add_argument("--ann-nprobe", type=int, default=None, help="padrec serve --ann-nprobe (its default)")
    lat.add_argument("--skip-in-process", action="store_true", help="skip the Recommender.recommend rows")
    common(lat, "serving_latency.json")
    lat.set_defaults(func=cmd_latency)

    syn = sub.add_parser(
        "synthetic",
        help="exact vs ANN top-k over a synthetic catalogue (+ HTTP end to end with --run)",
        description="Top-k stage over a synthetic PAD-like item matrix (see the module docstring).",
    )
    syn.add_argument("--items", type=positive(int), default=1_000_000, help="catalogue size N (1000000)")
    syn.add_argument("--dim", type=positive(int), default=64, help="columns per expert block D (64)")
    syn.add_argument("--experts", type=positive(int), default=3, help="expert blocks E (3)")
    syn.add_argument("--clusters", type=int, default=0, help="item categories (0: 0.55·sqrt(N))")
    syn.add_argument("--spread", type=float, default=2.6, help="noise around the category centre (2.6)")
    syn.add_argument("--noise-decay", type=float, default=0.7, help="noise sd along column j ∝ (j+1)^-this (0.7)")
    syn.add_argument("--norm-exponent", type=float, default=-0.1, help="item norm = (N/rank)^this (-0.1)")
    syn.add_argument("--calibrate", default=None, help="a finished run: compare with it at its size (see docstring)")
    syn.add_argument("--fit-decay", action="store_true", help="with --calibrate: fit --noise-decay to its HNSW curve")
    syn.add_argument("--fit-spread", action="store_true", help="with --calibrate: fit --spread to its IVF curve")
    syn.add_argument("--queries", type=positive(int), default=200, help="timed queries per setting (200)")
    syn.add_argument("--warmup", type=int, default=10, help="unrecorded queries per setting (10)")
    syn.add_argument("--threads-list", type=ints, default=[1, 2], help="torch/faiss threads to time (1,2)")
    syn.add_argument("--kinds", type=ann_kinds, default=list(KINDS), help="ANN indexes to measure (hnsw,ivf)")
    syn.add_argument("--ef-search", type=ints, default=[32, 64, 128, 256], help="hnsw efSearch values (32,64,128,256)")
    syn.add_argument("--nprobe", type=ints, default=[8, 16, 32, 64], help="ivf nprobe values (8,16,32,64)")
    syn.add_argument("--hnsw-m", type=positive(int), default=32, help="hnsw graph degree M (32, AnnConfig's)")
    syn.add_argument("--ef-construction", type=positive(int), default=80, help="hnsw efConstruction (80, AnnConfig's)")
    syn.add_argument("--run", default=None, help="a finished run: also serve the catalogue over HTTP with its method")
    syn.add_argument("--http-modes", type=http_modes, default=["exact", "ann"], help="exact and/or ann (exact,ann)")
    syn.add_argument("--http-concurrency", type=ints, default=[1, 8, 32], help="HTTP rows (1,8,32)")
    syn.add_argument("--http-requests", type=positive(int), default=500, help="requests per HTTP row at most (500)")
    syn.add_argument("--http-duration-s", type=positive(float), default=60.0, help="seconds per HTTP row at most (60)")
    syn.add_argument("--http-warmup", type=int, default=20, help="unrecorded HTTP requests (20)")
    syn.add_argument("--http-threads", type=int, default=1, help="server torch/faiss threads (1)")
    syn.add_argument("--http-ann-kind", choices=list(KINDS), default="hnsw", help="server ANN index (hnsw)")
    syn.add_argument("--http-ef-search", type=positive(int), default=128, help="server hnsw efSearch (128, as serve)")
    syn.add_argument("--http-nprobe", type=positive(int), default=32, help="server ivf nprobe (32, as padrec serve)")
    syn.add_argument("--startup-timeout-s", type=positive(float), default=900.0, help="server start-up limit (900)")
    common(syn, "serving_synthetic.json")
    syn.set_defaults(func=cmd_synthetic)

    soak_p = sub.add_parser(
        "soak",
        help="fixed request rate with POST /items mixed in, RSS sampled every second",
        description="Soak padrec serve (see the module docstring).",
    )
    soak_p.add_argument("run_dir", metavar="RUN_DIR")
    soak_p.add_argument("--minutes", type=positive(float), default=10.0, help="soak length (10)")
    soak_p.add_argument("--rate", type=positive(float), default=50.0, help="requests per second (50)")
    soak_p.add_argument("--concurrency", type=positive(int), default=8, help="requests in flight at most (8)")
    soak_p.add_argument("--items-every-s", type=positive(float), default=5.0, help="seconds between POST /items (5)")
    soak_p.add_argument("--items-batch", type=positive(int), default=2, help="new items per POST /items (2)")
    soak_p.add_argument("--window-s", type=positive(float), default=60.0, help="latency window (60: per minute)")
    soak_p.add_argument("--warmup", type=int, default=100, help="unrecorded requests first (100)")
    soak_p.add_argument("--threads", type=int, default=1, help="padrec serve --threads (1)")
    soak_p.add_argument("--ann-threshold", type=int, default=None, help="padrec serve --ann-threshold")
    soak_p.add_argument("--ann-kind", choices=["hnsw", "ivf"], default=None, help="padrec serve --ann-kind")
    soak_p.add_argument("--ann-ef-search", type=int, default=None, help="padrec serve --ann-ef-search")
    soak_p.add_argument("--ann-nprobe", type=int, default=None, help="padrec serve --ann-nprobe")
    common(soak_p, "serving_soak.json", multi=False)
    soak_p.set_defaults(func=cmd_soak)

    srv = sub.add_parser("serve-synthetic")  # internal (used by `synthetic`), unlisted: no help
    srv.add_argument("run_dir")
    srv.add_argument("--port", type=int, required=True)
    for name, kind in (("items", int), ("dim", int), ("experts", int), ("clusters", int), ("seed", int)):
        srv.add_argument(f"--{name}", type=kind, required=True)
    srv.add_argument("--spread", type=float, required=True)
    srv.add_argument("--noise-decay", type=float, required=True)
    srv.add_argument("--norm-exponent", type=float, required=True)
    srv.add_argument("--threads", type=int, default=1)
    srv.add_argument("--ann-threshold", type=int, default=0)
    srv.add_argument("--ann-kind", choices=list(KINDS), default="hnsw")
    srv.add_argument("--ann-ef-search", type=int, default=128)
    srv.add_argument("--ann-nprobe", type=int, default=32)
    srv.add_argument("--hnsw-m", type=int, default=32)
    srv.add_argument("--ef-construction", type=int, default=80)
    srv.set_defaults(func=cmd_serve_synthetic)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if hasattr(args, "server_env"):
        args.server_env = dict(args.server_env)
    if args.command != "serve-synthetic":
        # a SIGTERM runs the finally blocks (and atexit), so no server is left behind
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.func(args)


if __name__ == "__main__":
    main()
