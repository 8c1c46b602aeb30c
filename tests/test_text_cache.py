"""The content-addressed text cache: hits, incremental updates, corruption and mismatch handling."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from text_helpers import HashEncoder, hash_vector, titles_dataset

from padrec.text import (
    CacheEntry,
    TextConfig,
    build_text_embeddings,
    default_cache_dir,
    read_cache,
    write_cache,
)
from padrec.text.cache import cache_key, cache_path, text_hash

IDENT = {"encoder": "test-hash", "dim": 3}


@pytest.fixture(autouse=True)
def _reset() -> None:
    HashEncoder.reset()


def cfg(tmp_path: Path, **kw) -> TextConfig:
    return TextConfig(encoder="test-hash", cache_dir=str(tmp_path / "cache"), device="cpu", **kw)


def only_cache_file(tmp_path: Path) -> Path:
    files = list((tmp_path / "cache" / "text").glob("*.safetensors"))
    assert len(files) == 1, files
    return files[0]


def test_default_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PADREC_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PADREC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "padrec"


def test_key_depends_on_identity_and_template() -> None:
    k = cache_key(IDENT, "title")
    assert k == cache_key(dict(reversed(list(IDENT.items()))), "title")  # key order irrelevant
    assert k != cache_key({**IDENT, "dim": 4}, "title")
    assert k != cache_key(IDENT, "faerec-v1")
    assert text_hash("a") != text_hash("a ") and len(text_hash("a")) == 32


def test_write_read_round_trip_with_metadata(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_cache(path, CacheEntry([text_hash("a"), text_hash("b")], m), IDENT, "title", normalize=False)
    entry = read_cache(path, IDENT, "title")
    assert entry is not None and entry.hashes == [text_hash("a"), text_hash("b")]
    np.testing.assert_array_equal(entry.matrix, m)
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        meta = json.loads(fh.metadata()["padrec_text_cache"])
    assert meta["encoder"] == IDENT and meta["dimension"] == 3 and meta["count"] == 2
    assert meta["normalize"] is False and meta["created"] and len(meta["hashes"]) == 2
    assert not list(tmp_path.glob(".*tmp*"))


def test_second_run_is_all_hits_and_never_loads_model(tmp_path: Path) -> None:
    ds = titles_dataset(["Milk", "Tea", "Coffee"])
    first = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    assert HashEncoder.loads == 1 and first.encoded == 3
    second = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    assert HashEncoder.loads == 1, "a fully cached run must not load the encoder"
    assert second.encoded == 0 and second.cache_hits == 3 and second.items_per_second is None
    assert torch.equal(first.matrix, second.matrix)
    assert second.cache_path == str(only_cache_file(tmp_path))


def test_only_new_or_changed_texts_are_encoded(tmp_path: Path) -> None:
    build_text_embeddings(titles_dataset(["Milk", "Tea", "Coffee"]), cfg(tmp_path), progress=False)
    HashEncoder.reset()
    emb = build_text_embeddings(titles_dataset(["Milk", "Green Tea", "Coffee", "Sugar"]), cfg(tmp_path), progress=False)
    assert sorted(HashEncoder.encoded_texts) == ["Green Tea", "Sugar"]
    assert emb.encoded == 2 and emb.cache_hits == 2
    for i, t in enumerate(["Milk", "Green Tea", "Coffee", "Sugar"], start=1):
        np.testing.assert_array_equal(emb.matrix[i].numpy(), hash_vector(t, 6))
    entry = read_cache(only_cache_file(tmp_path), emb.identity, "title")
    assert entry is not None and len(entry.hashes) == 5  # old rows kept for other datasets


def test_different_encoder_settings_use_different_files(tmp_path: Path) -> None:
    ds = titles_dataset(["Milk"])
    build_text_embeddings(ds, cfg(tmp_path), progress=False)
    build_text_embeddings(ds, cfg(tmp_path, encoder_config={"version": "2"}), progress=False)
    build_text_embeddings(ds, cfg(tmp_path, template="{title}!"), progress=False)
    assert len(list((tmp_path / "cache" / "text").glob("*.safetensors"))) == 3
    assert HashEncoder.loads == 3


def test_use_cache_false_writes_nothing(tmp_path: Path) -> None:
    emb = build_text_embeddings(titles_dataset(["Milk"]), cfg(tmp_path, use_cache=False), progress=False)
    assert emb.cache_path is None and not (tmp_path / "cache").exists()


def _corrupt_truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:40])


def _corrupt_flip_data(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0xFF
    p.write_bytes(bytes(raw))


def _corrupt_garbage(p: Path) -> None:
    p.write_bytes(b"not a safetensors file at all")


def _corrupt_metadata(p: Path) -> None:
    # Rewrite the header with a metadata count that disagrees with the tensor.
    raw = p.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["padrec_text_cache"])
    meta["count"] += 1
    header["__metadata__"]["padrec_text_cache"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    p.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (_corrupt_truncate, "unreadable or corrupt"),
        (_corrupt_garbage, "unreadable or corrupt"),
        (_corrupt_flip_data, "checksum mismatch"),
        (_corrupt_metadata, "dimension mismatch"),
    ],
)
def test_corrupt_cache_is_detected_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, corrupt, reason: str
) -> None:
    ds = titles_dataset(["Milk", "Tea"])
    good = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    path = only_cache_file(tmp_path)
    corrupt(path)
    HashEncoder.reset()
    with caplog.at_level(logging.WARNING, logger="padrec.text"):
        again = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    assert reason in caplog.text and "rebuilding" in caplog.text
    assert again.encoded == 2 and HashEncoder.loads == 1
    assert torch.equal(again.matrix, good.matrix)
    assert read_cache(path, good.identity, "title") is not None  # the rebuilt file is valid


def test_cache_from_other_identity_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = titles_dataset(["Milk"])
    emb = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    path = Path(emb.cache_path)
    entry = read_cache(path, emb.identity, "title")
    # Same file name, but written by a "different" encoder: must be refused.
    write_cache(path, entry, {**emb.identity, "version": "other"}, "title", normalize=False)
    HashEncoder.reset()
    with caplog.at_level(logging.WARNING, logger="padrec.text"):
        again = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    assert "different encoder" in caplog.text and again.encoded == 1


def test_cache_with_other_dimension_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = titles_dataset(["Milk", "Tea"])
    emb = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    path = Path(emb.cache_path)
    # A valid file whose rows are 4-d while the encoder (same identity) gives 6-d vectors.
    write_cache(path, CacheEntry([text_hash("Milk")], np.ones((1, 4), np.float32)), emb.identity, "title", False)
    HashEncoder.reset()
    with caplog.at_level(logging.WARNING, logger="padrec.text"):
        again = build_text_embeddings(ds, cfg(tmp_path), progress=False)
    assert "4-d vectors but the encoder now gives 6-d" in caplog.text
    assert again.dim == 6 and torch.equal(again.matrix, emb.matrix)
    assert read_cache(path, emb.identity, "title").dim == 6


def test_nan_in_cache_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.safetensors"
    m = np.array([[1.0, np.nan]], dtype=np.float32)
    write_cache(path, CacheEntry([text_hash("a")], m), IDENT, "title", normalize=False)
    with caplog.at_level(logging.WARNING, logger="padrec.text"):
        assert read_cache(path, IDENT, "title") is None
    assert "NaN" in caplog.text


def test_cache_path_is_readable_name(tmp_path: Path) -> None:
    p = cache_path(tmp_path, {"encoder": "causal-lm"}, "title")
    assert p.parent == tmp_path / "text" and p.name.startswith("causal-lm-") and p.suffix == ".safetensors"
