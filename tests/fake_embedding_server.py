"""A local stand-in for an OpenAI-compatible ``/v1/embeddings`` endpoint, for tests.

Runs ``http.server`` on 127.0.0.1 (a free port) in a background thread. Each request consumes
the next scripted action; when the script is empty the server answers normally with
deterministic vectors derived from each input's sha256 (see :func:`fake_vector`).

Actions: ``"ok"``; ``"malformed"`` (200 with a body that is not JSON); ``"no-data"`` (200
with JSON lacking ``data``); ``"short"`` (200 with one embedding too few); or
``(status, headers, body)`` for any HTTP answer.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import numpy as np


def fake_vector(text: str, dim: int) -> list[float]:
    """Deterministic pseudo-embedding of ``text`` (values in [-1, 1))."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return [float(x) for x in rng.uniform(-1, 1, size=dim).astype(np.float32)]


class FakeEmbeddingServer:
    """Scriptable embedding server; use as a context manager, read ``base_url`` and ``requests``."""

    def __init__(self, dim: int = 8, script: list[Any] | None = None, api_key: str | None = None) -> None:
        self.dim = dim
        self.script: list[Any] = list(script or [])
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _next(self) -> Any:
        with self._lock:
            return self.script.pop(0) if self.script else "ok"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    payload = json.loads(raw)
                except json.JSONDecodeError:
                    payload = None
                with server._lock:
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "payload": payload}
                    )
                if self.path.rstrip("/") != "/v1/embeddings":
                    self._send(404, b'{"error": "not found"}')
                    return
                if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, b'{"error": {"message": "bad key"}}')
                    return
                action = server._next()
                if isinstance(action, tuple):
                    status, headers, body = action
                    self._send(status, body if isinstance(body, bytes) else str(body).encode(), headers)
                    return
                if action == "malformed":
                    self._send(200, b"<html>gateway says hello</html>")
                    return
                if action == "no-data":
                    self._send(200, b'{"object": "list"}')
                    return
                inputs = payload["input"]
                dim = payload.get("dimensions") or server.dim
                data = [
                    {"object": "embedding", "index": i, "embedding": fake_vector(t, dim)} for i, t in enumerate(inputs)
                ]
                if action == "short":
                    data = data[:-1]
                # Answer out of order: clients must sort by "index".
                data = data[::-1]
                body = json.dumps({"object": "list", "data": data, "model": payload.get("model")}).encode()
                self._send(200, body)

        return Handler

    def start(self) -> Self:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
