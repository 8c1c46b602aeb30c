"""File access shared by the readers: tables (CSV/TSV/Parquet), text files, item-id checks.

Every problem raises :class:`DataError` naming the file, the line (or row) and the field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from padrec.data.errors import DataError
from padrec.data.preprocess import id_strings, row_label

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; :class:`DataError` naming ``what`` when it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: {what} not found")
    if not p.is_file():
        raise DataError(f"{p}: {what} is not a regular file")
    return p


def table_kind(path: str | Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from the file extension (``.gz``/``.zip`` etc. allowed for text)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    kind = TABLE_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if kind is None:
        raise DataError(f"{path}: unsupported file extension; expected .csv, .tsv (optionally compressed) or .parquet")
    return kind


def read_table(path: str | Path, what: str = "table", *, all_text: bool = True) -> pd.DataFrame:
    """Read a CSV/TSV (every column as text, empty cells as ``""``) or Parquet table.

    Raises :class:`DataError` for a missing, unreadable, empty or malformed file.
    """
    p = require_file(path, what)
    kind = table_kind(p)
    with reading_errors(p, what, kind, hint="; wrong delimiter or format?"):
        if kind == "parquet":
            return pd.read_parquet(p)
        return pd.read_csv(
            p,
            sep="," if kind == "csv" else "\t",
            dtype=str if all_text else None,
            keep_default_na=not all_text,
            na_filter=not all_text,
        )


@contextlib.contextmanager
def reading_errors(path: Path, what: str, kind: str, parse_as: str = "", hint: str = "") -> Iterator[None]:
    """Turn pandas' and the OS's errors while reading ``path`` into :class:`DataError`.

    The message names the file and ``what`` it should be; a parse error says it could not be
    parsed as ``parse_as`` (default ``kind`` upper-cased, e.g. ``CSV``) and adds ``hint``, any
    other failure that it could not be read as ``kind``.
    """
    try:
        yield
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: {what} is empty") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: cannot parse {what} as {parse_as or kind.upper()} ({exc}){hint}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not UTF-8 text (byte {exc.start}); wrong format?") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read {what} as {kind} ({exc})") from exc


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; :class:`DataError` when it is not UTF-8 or cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not UTF-8 text (byte {exc.start}); wrong format?") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})") from exc


def unique_item_ids(column: pd.Series, path: Path, field: str) -> np.ndarray:
    """The ids of an item file's ``field`` column as strings; :class:`DataError` on a repeated id."""
    ids = id_strings(column, str(path), field, "csv")
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(ids == ids[np.flatnonzero(dup)[0]])
        raise DataError(
            f"{path}: field '{field}': duplicate item id {ids[rows[0]]!r} at "
            f"{', '.join(row_label(int(r), 'csv') for r in rows[:5])}; item ids must be unique"
        )
    return ids


def map_item_ids(
    known: np.ndarray, flat: np.ndarray, ends: np.ndarray, path: Path, field: Callable[[int, int], str], table: str
) -> np.ndarray:
    """Row of each id of ``flat`` in ``known`` (0-based); :class:`DataError` for the first unknown one.

    ``flat`` holds every sequence of ``path`` concatenated, sequence r ending before ``ends[r]``;
    the error names that line and ``field(k, r)`` for the unknown id at position k, and says it
    is not in ``table`` (e.g. "the metadata file x.csv").
    """
    ids = pd.Index(known).get_indexer(flat)
    unknown = ids < 0
    if unknown.any():
        k = int(np.flatnonzero(unknown)[0])
        row = int(np.searchsorted(ends, k, side="right"))
        raise DataError(
            f"{path}: {row_label(row, 'csv')}, field '{field(k, row)}': item id {flat[k]!r} is not in "
            f"{table} ({int(unknown.sum())} unknown in all)"
        )
    return ids
