"""The OpenAI-compatible encoder against a local stand-in server on 127.0.0.1 (no network)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from fake_embedding_server import FakeEmbeddingServer, fake_vector
from text_helpers import titles_dataset

from padrec.text import (
    EncoderRequestError,
    OpenAIConfig,
    OpenAIEncoder,
    TextConfig,
    TextError,
    build_text_embeddings,
)
from padrec.text.openai_compat import parse_retry_after

KEY_ENV = "PADREC_TEST_EMBED_KEY"


@pytest.fixture()
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    return "sk-test-123"


def encoder(server: FakeEmbeddingServer, sleeps: list[float] | None = None, **kw) -> OpenAIEncoder:
    cfg = OpenAIConfig(
        base_url=server.base_url, model="fake-embed", api_key_env=KEY_ENV, timeout=5, backoff_initial=0.25, **kw
    )
    enc = OpenAIEncoder(cfg, sleep=(sleeps.append if sleeps is not None else time.sleep))
    enc.ensure_loaded()
    return enc


def test_batched_requests_in_order_with_auth(key: str) -> None:
    texts = [f"item {i}" for i in range(10)]
    with FakeEmbeddingServer(dim=8, api_key=key) as srv:
        out = encoder(srv).encode(texts, batch_size=4)
    assert out.shape == (10, 8) and out.dtype == np.float32
    for i, t in enumerate(texts):
        np.testing.assert_allclose(out[i], fake_vector(t, 8), rtol=1e-6)
    assert len(srv.requests) == 3
    r = srv.requests[0]
    assert r["path"] == "/v1/embeddings" and r["headers"]["Authorization"] == f"Bearer {key}"
    assert r["payload"]["model"] == "fake-embed" and r["payload"]["encoding_format"] == "float"
    assert "dimensions" not in r["payload"]


def test_dimensions_sent(key: str) -> None:
    with FakeEmbeddingServer(dim=8) as srv:
        out = encoder(srv, dimensions=5).encode(["a", "b"], batch_size=8)
    assert out.shape == (2, 5) and srv.requests[0]["payload"]["dimensions"] == 5


def test_429_honours_retry_after_then_succeeds(key: str) -> None:
    sleeps: list[float] = []
    script = [(429, {"Retry-After": "7"}, b'{"error": "rate limited"}')]
    with FakeEmbeddingServer(script=script) as srv:
        enc = encoder(srv, sleeps)
        out = enc.encode(["a", "b"], batch_size=8)
    assert sleeps == [7.0] and len(srv.requests) == 2 and enc.retries_made == 1
    np.testing.assert_allclose(out[1], fake_vector("b", 8), rtol=1e-6)


def test_429_real_wait(key: str) -> None:
    script = [(429, {"Retry-After": "1"}, b"slow down")]
    with FakeEmbeddingServer(script=script) as srv:
        t0 = time.monotonic()
        out = encoder(srv).encode(["a"], batch_size=8)
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.95 and out.shape == (1, 8)


def test_500_retried_with_exponential_backoff(key: str) -> None:
    sleeps: list[float] = []
    script = [(500, {}, b"oops"), (502, {}, b"bad gateway"), (503, {}, b"busy")]
    with FakeEmbeddingServer(script=script) as srv:
        out = encoder(srv, sleeps).encode(["a"], batch_size=8)
    assert sleeps == [0.25, 0.5, 1.0] and len(srv.requests) == 4
    np.testing.assert_allclose(out[0], fake_vector("a", 8), rtol=1e-6)


def test_backoff_is_capped(key: str) -> None:
    sleeps: list[float] = []
    with FakeEmbeddingServer(script=[(500, {}, b"")] * 4) as srv:
        encoder(srv, sleeps, backoff_max=0.6).encode(["a"], batch_size=8)
    assert sleeps == [0.25, 0.5, 0.6, 0.6]


def test_retries_exhausted(key: str) -> None:
    sleeps: list[float] = []
    expected = "still failing after 3 attempts; last: HTTP 500: down"
    with (
        FakeEmbeddingServer(script=[(500, {}, b"down")] * 5) as srv,
        pytest.raises(EncoderRequestError, match=expected),
    ):
        encoder(srv, sleeps, max_retries=2).encode(["a"], batch_size=8)


@pytest.mark.parametrize(
    "action, msg",
    [
        ("malformed", "is not JSON"),
        ("no-data", "has no 'data' list"),
        ("short", "holds 1 embeddings for 2 inputs"),
        (
            (200, {}, b'{"data": [{"index": 0, "embedding": [1, "x"]}, {"index": 1, "embedding": [1, 2]}]}'),
            "non-numbers",
        ),
        (
            (200, {}, b'{"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [2]}]}'),
            "bad or repeated index",
        ),
        (
            (200, {}, b'{"data": [{"index": 0, "embedding": [1]}, {"index": 1, "embedding": [2, 3]}]}'),
            "differing or zero lengths",
        ),
    ],
)
def test_malformed_responses_are_clear_errors(key: str, action, msg: str) -> None:
    with FakeEmbeddingServer(script=[action]) as srv, pytest.raises(EncoderRequestError, match=msg):
        encoder(srv).encode(["a", "b"], batch_size=8)
    assert len(srv.requests) == 1, "a malformed answer is not retried"


def test_client_errors_are_not_retried(key: str) -> None:
    script = [(400, {}, b'{"error": "input too long"}')]
    with FakeEmbeddingServer(script=script) as srv, pytest.raises(EncoderRequestError, match="HTTP 400.*too long"):
        encoder(srv).encode(["a"], batch_size=8)
    assert len(srv.requests) == 1


def test_wrong_key_is_401(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "wrong")
    with FakeEmbeddingServer(api_key="right") as srv, pytest.raises(EncoderRequestError, match="HTTP 401"):
        encoder(srv).encode(["a"], batch_size=8)


def test_missing_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    enc = OpenAIEncoder(OpenAIConfig(base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV))
    with pytest.raises(TextError, match=f"environment variable {KEY_ENV}.*is not set"):
        enc.ensure_loaded()


def test_no_key_needed_when_env_name_empty() -> None:
    with FakeEmbeddingServer() as srv:
        cfg = OpenAIConfig(base_url=srv.base_url, model="m", api_key_env="")
        out = OpenAIEncoder(cfg).encode(["a"], batch_size=2)
    assert out.shape == (1, 8) and "Authorization" not in srv.requests[0]["headers"]


def test_connection_refused_is_retried_then_reported(key: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    sleeps: list[float] = []
    cfg = OpenAIConfig(
        base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV, max_retries=1, backoff_initial=0.0, timeout=2
    )
    enc = OpenAIEncoder(cfg, sleep=sleeps.append)
    with pytest.raises(EncoderRequestError, match="connection failed"):
        enc.encode(["a"], batch_size=1)
    assert sleeps == [0.0]


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-4") == 0.0
    now = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now=now) == pytest.approx(20.0)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        OpenAIConfig(base_url="ftp://x")
    assert OpenAIEncoder(OpenAIConfig(base_url="http://h/v1/embeddings")).url == "http://h/v1/embeddings"


def test_end_to_end_through_build_and_cache(key: str, tmp_path: Path) -> None:
    ds = titles_dataset(["Milk", "Tea", "Coffee", "Milk"])
    with FakeEmbeddingServer(dim=4) as srv:
        cfg = TextConfig(
            encoder="openai",
            batch_size=2,
            cache_dir=str(tmp_path),
            device="cpu",
            encoder_config={"base_url": srv.base_url, "model": "fake", "api_key_env": KEY_ENV},
        )
        emb = build_text_embeddings(ds, cfg, progress=False)
        assert emb.matrix.shape == (5, 4) and emb.encoded == 3 and len(srv.requests) == 2
        np.testing.assert_allclose(emb.matrix[2].numpy(), fake_vector("Tea", 4), rtol=1e-6)
        again = build_text_embeddings(ds, cfg, progress=False)
        assert again.cache_hits == 3 and len(srv.requests) == 2, "cached run must not call the endpoint"
    assert emb.identity["base_url"] == srv.base_url and "sk-" not in str(emb.identity)
