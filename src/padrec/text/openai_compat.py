"""Encoder for OpenAI-compatible ``/v1/embeddings`` endpoints (OpenAI, vLLM, TEI, Ollama, ...).

Uses only the standard library (``urllib``). Each batch is one request; failures are retried
with exponential backoff: connection errors, timeouts, HTTP 408/409/429 and 5xx. For 429 and
503 a ``Retry-After`` header (seconds or an HTTP date) sets the wait. Other HTTP errors and
answers that are not a well-formed embedding list raise :class:`EncoderRequestError` at once.
The API key is read from the environment variable named in the config, never stored.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from padrec.text.encoders import ENCODERS, TextEncoder
from padrec.text.errors import EncoderRequestError, TextError

logger = logging.getLogger("padrec.text")

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass
class OpenAIConfig:
    """Options of the ``openai`` encoder.

    Attributes:
        base_url: API root; requests go to ``<base_url>/embeddings``.
        model: model name sent in each request (e.g. ``text-embedding-3-small``).
        api_key_env: environment variable holding the API key; ``""`` sends no key (local servers).
        dimensions: ask the server for this many dimensions; 0 = the model's default.
        normalize: L2-normalise vectors client-side (OpenAI's are already unit length).
        timeout: seconds to wait for one response.
        max_retries: retries per batch after the first attempt.
        backoff_initial: first wait in seconds; doubled after each failure ...
        backoff_max: ... up to this many seconds (a server's Retry-After is honoured as given).
        requests_per_minute: client-side request rate limit; 0 = none.
    """

    base_url: str = "https://api.openai.com/v1"
    model: str = "text-embedding-3-small"
    api_key_env: str = "OPENAI_API_KEY"
    dimensions: int = 0
    normalize: bool = False
    timeout: float = 60.0
    max_retries: int = 6
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    requests_per_minute: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ValueError("model must be set (the name the endpoint expects)")
        if self.dimensions < 0 or self.max_retries < 0 or self.requests_per_minute < 0:
            raise ValueError("dimensions, max_retries and requests_per_minute must be >= 0")
        if self.timeout <= 0 or self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("timeout must be > 0 and backoff times >= 0")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), tz=UTC)
    return max(0.0, (when - current).total_seconds())


@ENCODERS.register("openai")
class OpenAIEncoder(TextEncoder):
    """Embeddings from an OpenAI-compatible HTTP endpoint; ``batch_size`` = inputs per request."""

    config_class = OpenAIConfig
    config: OpenAIConfig

    def __init__(self, config: OpenAIConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(config)
        self._sleep = sleep
        self._key: str | None = None
        self._last_request = 0.0
        self.requests_made = 0
        self.retries_made = 0

    @property
    def url(self) -> str:
        base = self.config.base_url.rstrip("/")
        return base if base.endswith("/embeddings") else base + "/embeddings"

    def identity(self) -> dict[str, Any]:
        return {
            "encoder": "openai",
            "base_url": self.config.base_url.rstrip("/"),
            "model": self.config.model,
            "dimensions": self.config.dimensions,
            "normalize": self.config.normalize,
            "dtype": "float32",
        }

    def load(self) -> None:
        env = self.config.api_key_env
        if env:
            key = os.environ.get(env, "")
            if not key:
                raise TextError(
                    f"openai encoder: environment variable {env} (config api_key_env) is not set; "
                    f"export the API key there, or set api_key_env to '' for an endpoint "
                    f"without authentication"
                )
            self._key = key

    def _throttle(self) -> None:
        if self.config.requests_per_minute > 0:
            gap = 60.0 / self.config.requests_per_minute
            wait = self._last_request + gap - time.monotonic()
            if wait > 0:
                self._sleep(wait)
        self._last_request = time.monotonic()

    def _post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read() if exc.fp is not None else b""
            return exc.code, dict(exc.headers.items()) if exc.headers else {}, payload

    def _parse(self, raw: bytes, n: int) -> np.ndarray:
        where = f"openai encoder: response from {self.url}"
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EncoderRequestError(f"{where} is not JSON ({exc}); starts with {raw[:120]!r}") from exc
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise EncoderRequestError(
                f"{where} has no 'data' list; keys: {sorted(data) if isinstance(data, dict) else type(data).__name__}"
            )
        if len(items) != n:
            raise EncoderRequestError(f"{where} holds {len(items)} embeddings for {n} inputs")
        rows: list[Any] = [None] * n
        for pos, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
                raise EncoderRequestError(f"{where}: data[{pos}] has no 'embedding' list")
            index = item.get("index", pos)
            if not isinstance(index, int) or not 0 <= index < n or rows[index] is not None:
                raise EncoderRequestError(f"{where}: data[{pos}] has a bad or repeated index {index!r}")
            rows[index] = item["embedding"]
        widths = {len(r) for r in rows}
        if len(widths) != 1 or 0 in widths:
            raise EncoderRequestError(f"{where}: embeddings have differing or zero lengths {sorted(widths)}")
        try:
            arr = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise EncoderRequestError(f"{where}: embeddings contain non-numbers ({exc})") from exc
        return arr

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.config.model, "input": texts, "encoding_format": "float"}
        if self.config.dimensions:
            payload["dimensions"] = self.config.dimensions
        body = json.dumps(payload).encode("utf-8")
        attempt = 0
        while True:
            self._throttle()
            self.requests_made += 1
            wait_hint: float | None = None
            try:
                status, headers, raw = self._post(body)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                problem = f"connection failed ({getattr(exc, 'reason', exc)})"
            else:
                if 200 <= status < 300:
                    return self._parse(raw, len(texts))
                snippet = raw[:300].decode("utf-8", "replace")
                problem = f"HTTP {status}: {snippet}"
                if status not in _RETRY_STATUS:
                    raise EncoderRequestError(f"openai encoder: {self.url} answered {problem}")
                if status in (429, 503):
                    lower = {k.lower(): v for k, v in headers.items()}
                    wait_hint = parse_retry_after(lower.get("retry-after"))
            if attempt >= self.config.max_retries:
                raise EncoderRequestError(
                    f"openai encoder: {self.url} still failing after {attempt + 1} attempts; last: {problem}"
                )
            delay = (
                wait_hint
                if wait_hint is not None
                else min(self.config.backoff_max, self.config.backoff_initial * (2**attempt))
            )
            logger.warning(
                "openai encoder: %s; retry %d/%d in %.1f s", problem, attempt + 1, self.config.max_retries, delay
            )
            self.retries_made += 1
            self._sleep(delay)
            attempt += 1
