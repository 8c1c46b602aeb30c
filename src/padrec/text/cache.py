"""Content-addressed cache of text embeddings.

One file per (encoder identity, template) under ``<cache_dir>/text/``, named
``<encoder>-<key>.safetensors`` where ``key`` hashes the encoder identity (name, model path or
package version, model fingerprint, pooling, normalisation, dtype, ...) and the template. The
file holds one tensor, ``embeddings`` (M x D float32), and a JSON metadata entry
``padrec_text_cache`` with the format version, encoder identity, template, dimension,
normalisation, row count, creation/update times, the sha256 of the matrix bytes, and the list
of per-text content hashes: ``hashes[r]`` is the sha256 of the text whose vector is row ``r``.

Because rows are found by text hash, a changed catalogue only encodes texts not seen before.
A file that cannot be read, whose metadata disagrees with its tensor or with the requested
encoder/template, whose checksum does not match, or that holds NaN/inf is reported with a
warning and rebuilt, never used.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from padrec.fingerprint import digest, sha256_hex
from padrec.io import atomic_path

logger = logging.getLogger("padrec.text")

CACHE_FORMAT = 1
_META_KEY = "padrec_text_cache"
_TENSOR = "embeddings"


def text_hash(text: str) -> str:
    """Content hash of one text (sha256 of its UTF-8 bytes, 32 hex characters)."""
    return sha256_hex(text)[:32]


def cache_key(identity: dict[str, Any], template_key: str) -> str:
    """Stable key of an (encoder identity, template) pair: 20 hex characters."""
    blob = json.dumps({"identity": identity, "template": template_key}, sort_keys=True, separators=(",", ":"))
    return sha256_hex(blob)[:20]


def cache_path(cache_dir: Path, identity: dict[str, Any], template_key: str) -> Path:
    """Where the cache file of this encoder identity and template lives."""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(identity.get("encoder", "encoder")))
    return Path(cache_dir) / "text" / f"{name}-{cache_key(identity, template_key)}.safetensors"


def _checksum(matrix: np.ndarray) -> str:
    return digest(np.ascontiguousarray(matrix, dtype=np.float32))


@dataclass
class CacheEntry:
    """Cached vectors: ``matrix[r]`` is the embedding of the text whose hash is ``hashes[r]``.

    Attributes:
        hashes: M text hashes (unique).
        matrix: M x D float32.
        created: ISO time the file was first written ("" for a new entry).
    """

    hashes: list[str]
    matrix: np.ndarray
    created: str = ""

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def index(self) -> dict[str, int]:
        """Text hash -> row."""
        return {h: r for r, h in enumerate(self.hashes)}


def read_cache(path: Path, identity: dict[str, Any], template_key: str) -> CacheEntry | None:
    """Load and verify a cache file; ``None`` when absent, or when unusable (after a warning).

    Checked: readable safetensors, metadata present and valid JSON, format version, encoder
    identity and template equal to the requested ones, tensor shape = (count, dimension),
    float32, unique hashes, matrix checksum, finite values.
    """
    path = Path(path)
    if not path.exists():
        return None
    problem = _verify(path, identity, template_key)
    if isinstance(problem, CacheEntry):
        return problem
    logger.warning("text cache %s: %s; ignoring it and rebuilding", path, problem)
    return None


def _verify(path: Path, identity: dict[str, Any], template_key: str) -> CacheEntry | str:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta_raw = (fh.metadata() or {}).get(_META_KEY)
            names = list(fh.keys())
            matrix = fh.get_tensor(_TENSOR) if _TENSOR in names else None
    except (SafetensorError, OSError, ValueError) as exc:
        return f"unreadable or corrupt file ({exc})"
    if meta_raw is None:
        return f"no '{_META_KEY}' metadata"
    if matrix is None:
        return f"no '{_TENSOR}' tensor (found {names})"
    try:
        meta = json.loads(meta_raw)
    except json.JSONDecodeError as exc:
        return f"metadata is not valid JSON ({exc})"
    if not isinstance(meta, dict):
        return "metadata is not a JSON object"
    if meta.get("format") != CACHE_FORMAT:
        return f"format {meta.get('format')!r}, this padrec reads format {CACHE_FORMAT}"
    if meta.get("encoder") != identity:
        return f"made by a different encoder ({meta.get('encoder')!r}, expected {identity!r})"
    if meta.get("template") != template_key:
        return f"made with template {meta.get('template')!r}, expected {template_key!r}"
    hashes = meta.get("hashes")
    count, dim = meta.get("count"), meta.get("dimension")
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        return "metadata 'hashes' is not a list of strings"
    if matrix.dtype != np.float32 or matrix.ndim != 2:
        return f"tensor is {matrix.dtype} with {matrix.ndim} dims, expected 2-D float32"
    if matrix.shape != (count, dim) or len(hashes) != count:
        return (
            f"dimension mismatch: tensor {tuple(matrix.shape)}, metadata count={count} dimension={dim}, "
            f"{len(hashes)} hashes"
        )
    if len(set(hashes)) != len(hashes):
        return "duplicate text hashes"
    if meta.get("checksum") != _checksum(matrix):
        return "checksum mismatch (the matrix bytes changed since it was written)"
    if not np.isfinite(matrix).all():
        return "matrix holds NaN/inf"
    return CacheEntry(hashes=list(hashes), matrix=matrix, created=str(meta.get("created", "")))


def write_cache(path: Path, entry: CacheEntry, identity: dict[str, Any], template_key: str, normalize: bool) -> None:
    """Write ``entry`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    from safetensors.numpy import save_file

    path = Path(path)
    matrix = np.ascontiguousarray(entry.matrix, dtype=np.float32)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    meta = {
        "format": CACHE_FORMAT,
        "encoder": identity,
        "template": template_key,
        "dimension": int(matrix.shape[1]),
        "normalize": bool(normalize),
        "count": int(matrix.shape[0]),
        "created": entry.created or now,
        "updated": now,
        "checksum": _checksum(matrix),
        "hashes": entry.hashes,
    }
    with atomic_path(path) as tmp:
        save_file({_TENSOR: matrix}, str(tmp), metadata={_META_KEY: json.dumps(meta, separators=(",", ":"))})
