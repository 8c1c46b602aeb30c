"""Content hashes: the one place padrec computes fingerprints of data, files and model folders.

* :func:`fingerprint` / :func:`digest`: sha256 over a sequence of parts (NumPy arrays and
  tensors by their bytes, anything else by its sorted-key JSON); phase and run fingerprints.
* :func:`sha256_hex`: sha256 of a string's UTF-8 bytes or of bytes.
* :func:`file_sha256`: sha256 of a whole file, read in 1 MiB blocks (dataset inputs).
* :func:`file_fingerprint` / :func:`dir_fingerprint`: cheap fingerprints of (large) model
  files and directories, from sizes and file ends (text encoders' revisions).

The algorithms are fixed: caches and finished runs are keyed on their output, so changing
one would silently invalidate them (tests pin known values).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["digest", "dir_fingerprint", "file_fingerprint", "file_sha256", "fingerprint", "sha256_hex"]


def _is_tensor(obj: Any) -> bool:
    # torch is not imported here: an object can only be a tensor if torch is already loaded,
    # so the torch-free layers (data) can use this module without importing torch.
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_tensor(obj)


def digest(*parts: Any) -> str:
    """Full sha256 hex digest (64 characters) of ``parts``, in order.

    A NumPy array contributes its C-contiguous bytes, a torch tensor those of its CPU copy,
    anything else ``json.dumps(part, sort_keys=True, default=str)`` as UTF-8.
    """
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        elif _is_tensor(p):
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A short (16 hex characters) sha256 of JSON-serialisable parts, numpy arrays and tensors.

    The first 16 characters of :func:`digest`; equal parts give equal fingerprints.
    """
    return digest(*parts)[:16]


def sha256_hex(data: str | bytes) -> str:
    """sha256 hex digest of ``data`` (a ``str`` is hashed as its UTF-8 bytes)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_fingerprint(path: str | Path, whole_below: int = 1 << 20, edge: int = 1 << 16) -> str:
    """Cheap content fingerprint: sha256 of the whole file if small, else of size + both ends.

    Returns the 64-character hex digest of the size (as decimal text) followed by the whole
    file when it has at most ``whole_below`` bytes, else by its first and last ``edge`` bytes.
    """
    path = Path(path)
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        if size <= whole_below:
            h.update(fh.read())
        else:
            h.update(fh.read(edge))
            fh.seek(size - edge)
            h.update(fh.read(edge))
    return h.hexdigest()


def dir_fingerprint(path: str | Path) -> str:
    """Fingerprint of a model directory: every file's relative path and :func:`file_fingerprint`.

    Files under ``__pycache__`` and ``.git`` are skipped. Catches swapped weights, edited
    configs and changed tokenizers without reading gigabytes. 16 hex characters.
    """
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and ".git" not in p.parts)
    for p in files:
        h.update(p.relative_to(path).as_posix().encode())
        h.update(file_fingerprint(p).encode())
    return h.hexdigest()[:16]
