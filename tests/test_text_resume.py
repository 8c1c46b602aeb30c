"""An interrupted encoding keeps its work: chunks saved as cache parts, a rerun encodes only the rest.

The resumed matrix must be bit-identical to an uninterrupted run's, which the batch-sensitive
fake encoder (``test-batch``, tests/text_helpers.py) checks: its vectors depend on the batch.
The last test kills ``python -m padrec encode`` with SIGKILL half-way and reruns it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fake_embedding_server import fake_vector
from text_helpers import BatchSensitiveEncoder, titles_dataset

import padrec.text.resume as resume
from padrec.text import CacheEntry, TextConfig, TextEmbeddings, build_text_embeddings, make_encoder, read_cache
from padrec.text.cache import cache_path, parts_dir, text_hash, write_cache, write_part


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume, "CHECKPOINT_TEXTS", 16)  # a part every 2 batches of 8
    monkeypatch.setattr(resume, "CHECKPOINT_SECONDS", 1e9)
    BatchSensitiveEncoder.reset()


def titles(n: int) -> list[str]:
    """Distinct titles of many different lengths (the batches are cut longest first)."""
    return [f"item {i} " + "word " * (i * 7 % 13) for i in range(n)]


def cfg(root: Path, **kw: Any) -> TextConfig:
    return TextConfig(encoder="test-batch", cache_dir=str(root), device="cpu", batch_size=8, **kw)


def cache_file(root: Path, **kw: Any) -> Path:
    c = cfg(root, **kw)
    return cache_path(root, make_encoder(c).identity(), "title")


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("normalize", [False, True])
def test_interrupted_encoding_resumes_bit_identical(tmp_path: Path, normalize: bool) -> None:
    ds = titles_dataset(titles(100))
    opts = {"encoder_config": {"normalize": normalize}}
    ref = build_text_embeddings(ds, cfg(tmp_path / "ref", **opts), progress=False)
    ref_batches = list(BatchSensitiveEncoder.batches)
    # The same chunked path as without a cache: chunking changes nothing.
    BatchSensitiveEncoder.reset()
    plain = build_text_embeddings(ds, cfg(tmp_path / "plain", use_cache=False, **opts), progress=False)
    assert torch.equal(plain.matrix, ref.matrix)

    BatchSensitiveEncoder.reset(interrupt_after=50)  # 6 batches (48 texts) done, Ctrl-C in the 7th
    root = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        build_text_embeddings(ds, cfg(root, **opts), progress=False)
    path = cache_file(root, **opts)
    assert not path.exists()  # only parts so far: 32 by checkpoints, 16 saved on the interruption
    saved = read_cache(path, make_encoder(cfg(root, **opts)).identity(), "title")
    assert saved is not None and len(saved.hashes) == 48 and len(saved.parts) == 3
    assert not leftovers(root)

    BatchSensitiveEncoder.reset()
    again = build_text_embeddings(ds, cfg(root, **opts), progress=False)
    assert again.encoded == 52 and again.cache_hits == 48
    assert BatchSensitiveEncoder.batches == ref_batches[6:]  # the same batches as the first run's tail
    assert torch.equal(again.matrix, ref.matrix)
    final = read_cache(path, make_encoder(cfg(root, **opts)).identity(), "title")
    assert final is not None and len(final.hashes) == 100 and final.parts == []
    assert not parts_dir(path).exists() and not leftovers(root)


def test_parts_are_written_while_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = resume.write_part

    def spy(path: Path, hashes: list[str], *args: Any) -> Path:
        seen.append(len(hashes))
        return real(path, hashes, *args)

    monkeypatch.setattr(resume, "write_part", spy)
    emb = build_text_embeddings(titles_dataset(titles(40)), cfg(tmp_path), progress=False)
    assert seen == [16, 16]  # the last 8 go straight into the consolidated cache file
    assert emb.encoded == 40 and not parts_dir(Path(emb.cache_path)).exists()


def test_time_based_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume, "CHECKPOINT_TEXTS", 10**9)
    monkeypatch.setattr(resume, "CHECKPOINT_SECONDS", 0.0)  # every batch is "30 s later"
    BatchSensitiveEncoder.reset(interrupt_after=20)
    with pytest.raises(KeyboardInterrupt):
        build_text_embeddings(titles_dataset(titles(40)), cfg(tmp_path), progress=False)
    entry = read_cache(cache_file(tmp_path), make_encoder(cfg(tmp_path)).identity(), "title")
    assert entry is not None and len(entry.hashes) == 16 and len(entry.parts) == 2


def test_kill_between_consolidation_and_cleanup(tmp_path: Path) -> None:
    """Parts whose rows are also in the cache file (a kill after writing it) are merged once."""
    ds = titles_dataset(["Milk", "Tea", "Coffee"])
    emb = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    path = Path(emb.cache_path)
    entry = read_cache(path, emb.identity, "title")
    write_part(path, entry.hashes[:2], entry.matrix[:2], emb.identity, "title", False)
    merged = read_cache(path, emb.identity, "title")
    assert merged.hashes == entry.hashes and len(merged.parts) == 1
    BatchSensitiveEncoder.reset()
    again = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    assert again.encoded == 0 and torch.equal(again.matrix, emb.matrix)
    assert not parts_dir(path).exists()  # folded in and removed by the fully cached run


def test_existing_cache_files_still_load(tmp_path: Path) -> None:
    """A cache file as padrec wrote it before parts existed is read and extended as before."""
    ds = titles_dataset(["Milk", "Tea"])
    ident = make_encoder(cfg(tmp_path)).identity()
    path = cache_path(tmp_path, ident, "title")
    old = np.arange(4, dtype=np.float32).reshape(1, 4)
    write_cache(path, CacheEntry([text_hash("Milk")], old), ident, "title", normalize=False)
    emb = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    assert emb.cache_hits == 1 and emb.encoded == 1
    assert np.array_equal(emb.matrix[1].numpy(), old[0])
    assert read_cache(path, ident, "title").hashes == [text_hash("Milk"), text_hash("Tea")]


# --------------------------------------------------------------------------- kill -9 of the CLI


class HoldingServer:
    """An OpenAI-compatible embedding endpoint that answers ``serve`` requests, then holds the rest.

    Held requests wait until :meth:`release`; so a client killed while waiting has had exactly
    ``serve`` batches answered. Vectors come from the text alone (:func:`fake_vector`).
    """

    def __init__(self, serve: int, dim: int = 8) -> None:
        self.serve, self.dim = serve, dim
        self.requests = 0
        self.inputs = 0
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def release(self) -> None:
        self.released.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with owner.lock:
                    owner.requests += 1
                    owner.inputs += len(payload["input"])
                    number = owner.requests
                if number > owner.serve:
                    owner.released.wait(timeout=300)
                data = [{"index": i, "embedding": fake_vector(t, owner.dim)} for i, t in enumerate(payload["input"])]
                body = json.dumps({"data": data}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client was killed while waiting
                    pass

        return Handler

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _pad_dataset(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    lines = ["asin,title"] + [f"A{i:05d},{t}" for i, t in enumerate(titles(n))]
    (folder / "metadata_toy.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "toy_cleaned_history.csv").write_text(",user,history\n0,u1,\"['A00000', 'A00001']\"\n")
    return folder


def _encode_cmd(data: Path, url: str, cache: Path, *extra: str) -> list[str]:
    opts = ["-o", f"base_url={url}", "-o", "api_key_env=", "-o", "model=fake", "-o", "max_retries=0"]
    return [sys.executable, "-m", "padrec", "encode", str(data), "-e", "openai", *opts, "-b", "256"] + [
        "--cache-dir",
        str(cache),
        "--device",
        "cpu",
        "-q",
        *extra,
    ]


def test_kill_9_during_padrec_encode_then_rerun_encodes_only_the_rest(tmp_path: Path) -> None:
    n, batch = 1300, 256  # 6 batches; a part every 1,024 texts (4 batches) or 30 s
    data = _pad_dataset(tmp_path / "toy", n)
    env = {**os.environ, "PADREC_CACHE": str(tmp_path / "dscache"), "OMP_NUM_THREADS": "1"}
    server = HoldingServer(serve=4)
    try:
        cache = tmp_path / "cache"
        proc = subprocess.Popen(
            _encode_cmd(data, server.base_url, cache), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 240
        while server.requests < 5:  # the 5th batch is held: batches 1-4 are answered and handled
            if proc.poll() is not None:
                pytest.fail(f"padrec encode ended early: {proc.stdout.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("padrec encode did not reach its 5th batch in 240 s")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

        ident = make_encoder(
            TextConfig(encoder="openai", encoder_config={"base_url": server.base_url, "model": "fake"})
        ).identity()
        path = cache_path(cache, ident, "title")
        saved = read_cache(path, ident, "title")
        assert saved is not None, "nothing of the killed run was kept"
        kept = len(saved.hashes)
        assert kept % batch == 0 and batch <= kept <= 4 * batch, kept
        assert not leftovers(cache)

        before = server.inputs  # counted on arrival, the held 5th batch included
        server.serve = 10**9
        server.release()
        out = subprocess.run(
            _encode_cmd(data, server.base_url, cache, "--output", str(tmp_path / "resumed")),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert server.inputs - before == n - kept  # only what the killed run had not kept

        ref = subprocess.run(
            _encode_cmd(data, server.base_url, tmp_path / "refcache", "--output", str(tmp_path / "ref")),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ref.returncode == 0, ref.stdout + ref.stderr
        resumed, whole = TextEmbeddings.load(tmp_path / "resumed"), TextEmbeddings.load(tmp_path / "ref")
        assert resumed.matrix.shape == (n + 1, 8)
        assert torch.equal(resumed.matrix, whole.matrix)
        assert not parts_dir(path).exists()
    finally:
        server.close()
