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

While texts are being encoded, finished chunks are saved as *part files* in the same format
next to the cache file, in ``<encoder>-<key>.parts/part-<time>-<random>.safetensors`` (each
written atomically by :func:`write_part`). :func:`read_cache` merges the cache file and its
parts, so a run killed half-way keeps what it had encoded; :func:`consolidate` folds them into
the cache file at the end and removes them.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
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
        parts: the part files merged into this entry (see :func:`read_cache`).
    """

    hashes: list[str]
    matrix: np.ndarray
    created: str = ""
    parts: list[Path] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def index(self) -> dict[str, int]:
        """Text hash -> row."""
        return {h: r for r, h in enumerate(self.hashes)}


def parts_dir(path: Path) -> Path:
    """The folder of the part files of cache file ``path`` (``<stem>.parts`` next to it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.parts")


def read_cache(path: Path, identity: dict[str, Any], template_key: str) -> CacheEntry | None:
    """Load and verify a cache file and its part files; ``None`` when there is nothing usable.

    Checked for each file: readable safetensors, metadata present and valid JSON, format
    version, encoder identity and template equal to the requested ones, tensor shape =
    (count, dimension), float32, unique hashes, matrix checksum, finite values. An unusable
    file is reported with a warning and left out; so is a part whose width differs from the
    cache file's (or the first part's). Rows of a text found twice come from the first file.
    """
    path = Path(path)
    main: CacheEntry | None = None
    if path.exists():
        problem = _verify(path, identity, template_key)
        if isinstance(problem, CacheEntry):
            main = problem
        else:
            logger.warning("text cache %s: %s; ignoring it and rebuilding", path, problem)
    pieces = [main] if main is not None else []
    part_files = sorted(parts_dir(path).glob("part-*.safetensors")) if parts_dir(path).is_dir() else []
    used: list[Path] = []
    for part in part_files:
        got = _verify(part, identity, template_key)
        if not isinstance(got, CacheEntry):
            logger.warning("text cache part %s: %s; ignoring it", part, got)
        elif pieces and got.dim != pieces[0].dim:
            logger.warning(
                "text cache part %s: holds %d-d vectors, the cache %d-d; ignoring it", part, got.dim, pieces[0].dim
            )
        else:
            pieces.append(got)
            used.append(part)
    if not pieces:
        return None
    if len(pieces) == 1 and main is not None:
        return main
    hashes: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    for piece in pieces:
        keep = [r for r, h in enumerate(piece.hashes) if h not in seen]
        seen.update(piece.hashes)
        hashes.extend(piece.hashes[r] for r in keep)
        rows.append(piece.matrix[keep])
    created = main.created if main is not None else ""
    return CacheEntry(hashes=hashes, matrix=np.concatenate(rows), created=created, parts=used)


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


def write_part(
    path: Path, hashes: list[str], matrix: np.ndarray, identity: dict[str, Any], template_key: str, normalize: bool
) -> Path:
    """Save freshly encoded rows as a new part file of cache ``path`` (atomically); returns it."""
    part = parts_dir(path) / f"part-{time.time_ns():020d}-{secrets.token_hex(3)}.safetensors"
    write_cache(part, CacheEntry(hashes=list(hashes), matrix=matrix), identity, template_key, normalize)
    return part


def consolidate(
    path: Path, entry: CacheEntry, identity: dict[str, Any], template_key: str, normalize: bool, parts: list[Path]
) -> None:
    """Write ``entry`` as cache file ``path``, then delete the part files ``parts`` it holds.

    The cache file is complete on disk before any part goes, so a kill in between only leaves
    parts whose rows are also in the cache file (:func:`read_cache` skips them). Unusable part
    files are removed too; valid ones written meanwhile by another process stay for the next run.
    """
    write_cache(path, entry, identity, template_key, normalize)
    for part in parts:
        part.unlink(missing_ok=True)
    folder = parts_dir(path)
    for part in folder.glob("part-*.safetensors") if folder.is_dir() else []:
        if not isinstance(_verify(part, identity, template_key), CacheEntry):
            part.unlink(missing_ok=True)  # unusable (reported when read): nothing to keep
    try:
        folder.rmdir()  # only when empty: another process may have written parts meanwhile
    except OSError:
        pass
