"""Processed-dataset cache: a directory of JSON, NPZ and Parquet files (no pickle).

Layout of one cache entry (``<cache_dir>/datasets/<name>-<key>/``)::

    meta.json       format_version, name, source, fingerprint (+ its inputs), counts, created
    sequences.npz   items: int64 (total interactions,), all sequences concatenated
                    offsets: int64 (users + 1,), sequence u = items[offsets[u]:offsets[u+1]]
    users.parquet   user (int64 internal index), original_id (string)
    items.parquet   item (int64 internal id 0..N), original_id (string; "[PAD]" for 0),
                    then the item table's text columns (string)

The fingerprint is the SHA-256 of every input file's bytes plus the JSON of the reading and
preprocessing options and the version of the reading rules (:data:`READING_RULES`); an entry
is reused only when it matches. A changed input or a corrupt or inconsistent entry is rebuilt
with a logged warning. Entries are written to a temporary directory and renamed into place, so
readers never see half-written output.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from padrec.data.dataset import SequenceDataset
from padrec.data.preprocess import split_by_lengths
from padrec.fingerprint import digest, file_sha256
from padrec.fingerprint import fingerprint as _short_fingerprint
from padrec.io import read_json, write_json

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
# Version of the readers' rules, fingerprinted with the options of every entry: raised whenever
# the same files and options give a different dataset, so older entries are rebuilt. 2: titles
# have HTML character references decoded.
READING_RULES = 2
_FILES = ("meta.json", "sequences.npz", "users.parquet", "items.parquet")


def default_cache_dir() -> Path:
    """``$PADREC_CACHE`` if set, else ``~/.cache/padrec``."""
    env = os.environ.get("PADREC_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "padrec"


def fingerprint(files: Sequence[str | Path], options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Fingerprint of ``files`` (by content, in the given order) and ``options``.

    Returns ``(hex digest, inputs)`` where ``inputs`` records each file's digest and the
    options, for meta.json.
    """
    digests = [[Path(f).name, file_sha256(f)] for f in files]
    inputs = {"files": digests, "options": options, "format_version": CACHE_FORMAT_VERSION}
    return digest(inputs), inputs


def entry_dir(cache_dir: str | Path, name: str, files: Sequence[str | Path], options: dict[str, Any]) -> Path:
    """Where the entry for (name, input paths, options) lives; contents are checked separately."""
    key = _short_fingerprint({"files": [str(Path(f).resolve()) for f in files], "options": options})
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "dataset"
    return Path(cache_dir) / "datasets" / f"{safe}-{key}"


def save_dataset(dataset: SequenceDataset, directory: str | Path, fp: str, fp_inputs: dict[str, Any]) -> Path:
    """Write ``dataset`` as a cache entry at ``directory`` (atomically replacing an old one)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        lengths = dataset.lengths
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate(dataset.sequences).astype(np.int64) if dataset.sequences else np.zeros(0, dtype=np.int64)
        with open(tmp / "sequences.npz", "wb") as fh:
            np.savez(fh, items=flat, offsets=offsets)
        pd.DataFrame(
            {
                "user": np.arange(dataset.num_users, dtype=np.int64),
                "original_id": pd.array([str(u) for u in dataset.user_ids], dtype="string"),
            }
        ).to_parquet(tmp / "users.parquet", index=False)
        items = {
            "item": np.arange(dataset.num_items + 1, dtype=np.int64),
            "original_id": pd.array([str(i) for i in dataset.item_ids], dtype="string"),
        }
        for col in dataset.item_table.columns:
            if col in items:
                raise ValueError(f"item table column name {col!r} is reserved in the cache format")
            items[str(col)] = pd.array(dataset.item_table[col].astype(str).to_numpy(), dtype="string")
        pd.DataFrame(items).to_parquet(tmp / "items.parquet", index=False)
        meta = {
            "format_version": CACHE_FORMAT_VERSION,
            "name": dataset.name,
            "source": dataset.source,
            "fingerprint": fp,
            "fingerprint_inputs": fp_inputs,
            "counts": {
                "users": dataset.num_users,
                "items": dataset.num_items,
                "interactions": dataset.num_interactions,
            },
            "text_columns": [str(c) for c in dataset.item_table.columns],
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        write_json(tmp / "meta.json", meta)
        old = None
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, old / "entry")
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


class CacheInvalid(Exception):
    """A cache entry is missing, stale or damaged (the message says which)."""


def load_entry(directory: str | Path, fp: str | None = None) -> SequenceDataset:
    """Read a cache entry, checking version, fingerprint (when given) and internal consistency.

    Raises :class:`CacheInvalid` describing the first problem found.
    """
    directory = Path(directory)
    if not (directory / "meta.json").is_file():
        raise CacheInvalid("no cache entry")
    try:
        meta = read_json(directory / "meta.json")
    except (OSError, ValueError) as exc:
        raise CacheInvalid(f"meta.json unreadable ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != CACHE_FORMAT_VERSION:
        raise CacheInvalid(
            f"format version {meta.get('format_version') if isinstance(meta, dict) else '?'} != {CACHE_FORMAT_VERSION}"
        )
    if fp is not None and meta.get("fingerprint") != fp:
        raise CacheInvalid("the input files, the options or padrec's reading rules changed since the cache was written")
    try:
        with np.load(directory / "sequences.npz", allow_pickle=False) as z:
            flat, offsets = z["items"], z["offsets"]
        users = pd.read_parquet(directory / "users.parquet")
        items = pd.read_parquet(directory / "items.parquet")
        counts = meta["counts"]
        text_cols = list(meta["text_columns"])
    except Exception as exc:  # any read failure means a damaged entry, rebuilt by the caller
        raise CacheInvalid(f"cannot read cache files ({type(exc).__name__}: {exc})") from exc
    n_users, n_items = len(users), len(items) - 1
    problems = []
    if flat.dtype != np.int64 or offsets.dtype != np.int64 or flat.ndim != 1 or offsets.ndim != 1:
        problems.append("sequences.npz arrays are not 1-D int64")
    elif len(offsets) != n_users + 1 or offsets[0] != 0 or offsets[-1] != len(flat) or np.any(np.diff(offsets) < 0):
        problems.append("sequence offsets do not match the users")
    elif len(flat) and (flat.min() < 1 or flat.max() > n_items):
        problems.append("item ids out of range")
    if (counts.get("users"), counts.get("items"), counts.get("interactions")) != (n_users, n_items, len(flat)):
        problems.append("counts in meta.json do not match the files")
    if list(items.columns) != ["item", "original_id", *text_cols] or list(users.columns) != ["user", "original_id"]:
        problems.append("parquet columns do not match meta.json")
    if problems:
        raise CacheInvalid("; ".join(problems))
    table = pd.DataFrame(
        {c: items[c].astype(object).to_numpy(dtype=object) for c in text_cols}, index=pd.RangeIndex(n_items + 1)
    )
    return SequenceDataset(
        name=str(meta.get("name", directory.name)),
        sequences=split_by_lengths(flat, np.diff(offsets)),
        user_ids=users["original_id"].astype(object).to_numpy(dtype=object),
        item_ids=items["original_id"].astype(object).to_numpy(dtype=object),
        item_table=table,
        source=dict(meta.get("source") or {}),
    )


def cached_build(
    name: str,
    files: Sequence[str | Path],
    options: dict[str, Any],
    build: Callable[[], SequenceDataset],
    cache_dir: str | Path | None = None,
) -> SequenceDataset:
    """Return the cached dataset for (``files``, ``options``) or build, cache and return it.

    A stale or damaged entry is rebuilt with a warning. Failing to write the cache (read-only
    directory, full disk) only logs a warning: the built dataset is still returned.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    # The readers' rules version joins the fingerprinted options (not the entry's location), so an
    # entry written under older rules is found, reported and rebuilt in place.
    fp, inputs = fingerprint(files, {**options, "reading_rules": READING_RULES})
    where = entry_dir(root, name, files, options)
    try:
        ds = load_entry(where, fp)
        log.info("loaded %s from cache %s", name, where)
        return ds
    except CacheInvalid as exc:
        if str(exc) != "no cache entry":
            log.warning("dataset cache %s is not usable (%s); rebuilding it", where, exc)
    ds = build()
    try:
        save_dataset(ds, where, fp, inputs)
        log.info("cached %s at %s", name, where)
    except (OSError, ValueError) as exc:
        log.warning("could not write the dataset cache %s (%s); continuing without it", where, exc)
    return ds
