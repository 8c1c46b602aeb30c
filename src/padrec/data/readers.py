"""Readers for the published dataset formats and for the user's own interaction tables.

Each reader returns a :class:`SequenceDataset` (internal item ids 1..N, 0 = padding). The
released formats (PAD CSV, FAERec text, RecBole atomic sequences) are read exactly as
published: no filtering, and item numbering that reproduces the release's ids. Every problem
raises :class:`DataError` naming the file, the line (or row) and the field.
"""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from padrec.data.dataset import PAD_TOKEN, SequenceDataset
from padrec.data.errors import DataError
from padrec.data.preprocess import (
    PreprocessConfig,
    build_sequence_dataset,
    check_columns,
    id_strings,
    row_label,
    split_by_lengths,
    text_column,
)

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


# --------------------------------------------------------------------------- file access


def _require_file(path: str | Path, what: str) -> Path:
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
    p = _require_file(path, what)
    kind = table_kind(p)
    try:
        if kind == "parquet":
            return pd.read_parquet(p)
        return pd.read_csv(
            p,
            sep="," if kind == "csv" else "\t",
            dtype=str if all_text else None,
            keep_default_na=not all_text,
            na_filter=not all_text,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{p}: {what} is empty") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{p}: cannot parse {what} as {kind.upper()} ({exc}); wrong delimiter or format?") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: {what} is not UTF-8 text (byte {exc.start}); wrong format?") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: cannot read {what} as {kind} ({exc})") from exc


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not UTF-8 text (byte {exc.start}); wrong format?") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})") from exc


# --------------------------------------------------------------------------- PAD release


def _parse_history(text: str, path: Path, i: int) -> list[str]:
    """One ``history`` cell: a Python-literal list of item ids (strings)."""
    # JSON is a fast exact reading of the common case (single-quoted ids without quotes or
    # backslashes inside); anything else goes through ast.literal_eval.
    value: object
    if '"' not in text and "\\" not in text:
        try:
            value = json.loads(text.replace("'", '"'))
        except ValueError:
            value = None
    else:
        value = None
    if value is None:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise DataError(
                f"{path}: {row_label(i, 'csv')}, field 'history': expected a Python list of item ids "
                f"like ['B00..', 'B01..'], got {text[:60]!r} ({type(exc).__name__})"
            ) from None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(x, (str, int)) and not isinstance(x, bool) for x in value
    ):
        raise DataError(
            f"{path}: {row_label(i, 'csv')}, field 'history': expected a list of item ids, got {text[:60]!r}"
        )
    if not value:
        raise DataError(f"{path}: {row_label(i, 'csv')}, field 'history': the history is empty")
    return [str(x) for x in value]


def read_pad_csv(history_path: str | Path, metadata_path: str | Path, name: str = "prime_pantry") -> SequenceDataset:
    """Read PAD's released Prime Pantry files.

    ``history_path``: CSV with header ``,user,history`` (index column, user id, Python-literal
    list of item ASINs in time order). ``metadata_path``: CSV with header ``asin,title`` (more
    columns are kept as text); item id = metadata row index + 1, every metadata item is kept.

    Returns the dataset (Prime Pantry: 12,871 users, 8,347 items, 115,004 interactions).
    """
    hist_p = _require_file(history_path, "PAD history CSV")
    meta_p = _require_file(metadata_path, "PAD metadata CSV")
    meta = read_table(meta_p, "PAD metadata CSV")
    check_columns(meta, ["asin", "title"], str(meta_p), "PAD metadata CSV")
    hist = read_table(hist_p, "PAD history CSV")
    check_columns(hist, ["user", "history"], str(hist_p), "PAD history CSV")

    item_ids = id_strings(meta["asin"], str(meta_p), "asin", "csv")
    dup = pd.Series(item_ids).duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(item_ids == item_ids[np.flatnonzero(dup)[0]])
        raise DataError(
            f"{meta_p}: field 'asin': duplicate item id {item_ids[rows[0]]!r} at "
            f"{', '.join(row_label(int(r), 'csv') for r in rows[:5])}; item ids must be unique"
        )
    users = id_strings(hist["user"], str(hist_p), "user", "csv")
    histories = [_parse_history(t, hist_p, i) for i, t in enumerate(hist["history"].tolist())]
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    flat = np.fromiter((a for h in histories for a in h), dtype=object, count=int(lengths.sum()))
    ids = pd.Index(item_ids).get_indexer(flat)
    if (ids < 0).any():
        k = int(np.flatnonzero(ids < 0)[0])
        row = int(np.searchsorted(np.cumsum(lengths), k, side="right"))
        raise DataError(
            f"{hist_p}: {row_label(row, 'csv')}, field 'history': item id {flat[k]!r} is not in "
            f"the metadata file {meta_p.name} ({int((ids < 0).sum())} unknown in all)"
        )
    sequences = split_by_lengths((ids + 1).astype(np.int64), lengths)

    text_cols = [c for c in meta.columns if c != "asin"]
    item_table = pd.DataFrame({c: np.concatenate([[""], text_column(meta[c])]).astype(object) for c in text_cols})
    return SequenceDataset(
        name=name,
        sequences=sequences,
        user_ids=users,
        item_ids=np.concatenate([[PAD_TOKEN], item_ids]).astype(object),
        item_table=item_table,
        source={"reader": "pad_csv", "files": [str(hist_p), str(meta_p)]},
    )


# --------------------------------------------------------------------------- FAERec release


def read_faerec_txt(path: str | Path, name: str | None = None) -> SequenceDataset:
    """Read a FAERec release file: one line per user, ``uid item item ...`` (spaces, ids >= 1).

    The file's item ids are kept as internal ids when they are exactly 1..max (so numbers match
    the release); otherwise they are mapped densely in increasing numeric order. The item
    table has no columns (the release ships no text). ``name`` defaults to the lower-cased stem.
    """
    p = _require_file(path, "FAERec sequence file")
    lines = _read_text(p, "FAERec sequence file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{p}: FAERec sequence file is empty")
    users: list[str] = []
    lengths = np.zeros(len(lines), dtype=np.int64)
    tokens: list[str] = []
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) < 2:
            what = "an empty line" if not parts else f"only {parts[0]!r}"
            raise DataError(
                f"{p}: line {i + 1}: expected 'user_id item_id item_id ...' separated by spaces, got {what}"
            )
        users.append(parts[0])
        lengths[i] = len(parts) - 1
        tokens.extend(parts[1:])
    try:
        flat = np.array(tokens, dtype=np.int64)
    except ValueError:
        flat = None
    if flat is None or (flat < 1).any():
        for i, line in enumerate(lines):
            for j, tok in enumerate(line.split()[1:], start=2):
                if not tok.isdigit() or int(tok) < 1:
                    raise DataError(
                        f"{p}: line {i + 1}, field {j} (item id): expected an integer >= 1 separated "
                        f"by spaces, got {tok!r}"
                    )
    assert flat is not None
    dup = pd.Series(users).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"{p}: line {i + 1}, field 1 (user id): duplicate user id {users[i]!r}; expected one line per user"
        )
    present = np.bincount(flat)[1:] > 0
    ids_kept = bool(present.all())
    if ids_kept:  # ids are exactly 1..max
        internal, originals = flat, np.arange(1, len(present) + 1)
    else:
        originals = np.flatnonzero(present) + 1
        internal = np.cumsum(present)[flat - 1]
    n = len(originals)
    item_ids = np.empty(n + 1, dtype=object)
    item_ids[0] = PAD_TOKEN
    item_ids[1:] = [str(x) for x in originals]
    return SequenceDataset(
        name=name or p.stem.lower(),
        sequences=split_by_lengths(internal.astype(np.int64), lengths),
        user_ids=np.asarray(users, dtype=object),
        item_ids=item_ids,
        item_table=pd.DataFrame(index=pd.RangeIndex(n + 1)),
        source={"reader": "faerec_txt", "files": [str(p)], "ids_kept": ids_kept},
    )


# --------------------------------------------------------------------------- RecBole atomic


def read_atomic(path: str | Path, what: str) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, header ``name:type``); columns renamed to ``name``."""
    p = _require_file(path, what)
    try:
        df = pd.read_csv(
            p, sep="\t", dtype=str, keep_default_na=False, na_filter=False, quoting=csv.QUOTE_NONE, engine="c"
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{p}: {what} is empty") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{p}: cannot parse {what} as tab-separated RecBole atomic data ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: {what} is not UTF-8 text (byte {exc.start}); wrong format?") from exc
    except OSError as exc:
        raise DataError(f"{p}: cannot read {what} ({exc.strerror})") from exc
    names = [str(c).split(":", 1)[0] for c in df.columns]
    if len(set(names)) != len(names):
        raise DataError(f"{p}: {what} header has repeated field names {names}")
    if len(names) == 1 and "\t" not in str(df.columns[0]):
        raise DataError(
            f"{p}: {what} has a single column {str(df.columns[0])!r}; RecBole atomic files are "
            "tab-separated with a 'name:type' header (wrong delimiter?)"
        )
    df.columns = names
    return df


def read_recbole_atomic(
    item_path: str | Path | None,
    inter_path: str | Path,
    name: str = "games",
    preprocess: PreprocessConfig | None = None,
) -> SequenceDataset:
    """Read RecBole atomic files; columns are found by the name before ``:`` in the header.

    Two ``.inter`` layouts are understood:

    - sequence files (``user_id``, ``item_id_list``, ``item_id``; e.g. LLMRank's
      ``Games.test.inter``): each user's sequence is ``item_id_list + [item_id]``, read as
      published (``preprocess`` must be None);
    - interaction files (``user_id``, ``item_id``, optional ``timestamp`` and ``rating``):
      handed to :func:`build_sequence_dataset` with ``preprocess`` (default: no filtering).

    With an ``.item`` file (``item_id`` + text fields such as ``title``), items are numbered
    in its row order (row r -> r + 1, every item kept) and an interaction naming an item the
    file lacks is an error; without one, in order of first appearance.
    """
    inter_p = _require_file(inter_path, "RecBole .inter file")
    inter = read_atomic(inter_p, "RecBole .inter file")
    items, item_p = None, None
    if item_path is not None:
        item_p = _require_file(item_path, "RecBole .item file")
        items = read_atomic(item_p, "RecBole .item file")
        check_columns(items, ["item_id"], str(item_p), "RecBole .item file")
    files = [str(inter_p)] + ([str(item_p)] if item_p else [])

    if "item_id_list" not in inter.columns:
        check_columns(inter, ["user_id", "item_id"], str(inter_p), "RecBole .inter file")
        cfg = preprocess or PreprocessConfig(
            min_user_interactions=0, item_order="item_table" if items is not None else "first_seen"
        )
        return build_sequence_dataset(
            inter,
            items,
            cfg,
            name=name,
            user_col="user_id",
            item_col="item_id",
            time_col="timestamp" if "timestamp" in inter.columns else None,
            rating_col="rating" if "rating" in inter.columns else None,
            source={"reader": "recbole_atomic", "files": files},
            interactions_where=str(inter_p),
            items_where=str(item_p),
            file_kind="csv",
        )

    if preprocess is not None:
        raise DataError(
            f"{inter_p}: RecBole sequence files are read as published; preprocessing options "
            "apply to interaction files only"
        )
    check_columns(inter, ["user_id", "item_id_list", "item_id"], str(inter_p), "RecBole .inter file")
    users = id_strings(inter["user_id"], str(inter_p), "user_id", "csv")
    dup = pd.Series(users).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"{inter_p}: {row_label(i, 'csv')}, field 'user_id': duplicate user id {users[i]!r}; "
            "a sequence file holds one line per user"
        )
    lists = inter["item_id_list"].str.split()
    targets = inter["item_id"].str.strip()
    empty_target = (targets == "").to_numpy()
    if empty_target.any():
        i = int(np.flatnonzero(empty_target)[0])
        raise DataError(f"{inter_p}: {row_label(i, 'csv')}, field 'item_id': expected an item id, got an empty value")
    lengths = lists.str.len().to_numpy().astype(np.int64) + 1
    flat = np.empty(int(lengths.sum()), dtype=object)
    ends = np.cumsum(lengths)
    flat[ends - 1] = targets.to_numpy(dtype=object)
    mask = np.ones(len(flat), dtype=bool)
    mask[ends - 1] = False
    flat[mask] = [t for lst in lists for t in lst]

    if items is not None:
        table_ids = id_strings(items["item_id"], str(item_p), "item_id", "csv")
        dupi = pd.Series(table_ids).duplicated(keep=False).to_numpy()
        if dupi.any():
            rows = np.flatnonzero(table_ids == table_ids[np.flatnonzero(dupi)[0]])
            raise DataError(
                f"{item_p}: field 'item_id': duplicate item id {table_ids[rows[0]]!r} at "
                f"{', '.join(row_label(int(r), 'csv') for r in rows[:5])}; item ids must be unique"
            )
        ids = pd.Index(table_ids).get_indexer(flat)
        if (ids < 0).any():
            k = int(np.flatnonzero(ids < 0)[0])
            row = int(np.searchsorted(ends, k, side="right"))
            field = "item_id" if k == ends[row] - 1 else "item_id_list"
            raise DataError(
                f"{inter_p}: {row_label(row, 'csv')}, field '{field}': item id {flat[k]!r} is not in "
                f"the item file {item_p.name if item_p else ''} ({int((ids < 0).sum())} unknown in all)"
            )
        text_cols = [c for c in items.columns if c != "item_id"]
        item_table = pd.DataFrame({c: np.concatenate([[""], text_column(items[c])]).astype(object) for c in text_cols})
        originals = table_ids
    else:
        codes, uniques = pd.factorize(flat, sort=False)
        ids, originals = codes, np.asarray(uniques, dtype=object)
        item_table = pd.DataFrame(index=pd.RangeIndex(len(originals) + 1))
    item_ids = np.concatenate([[PAD_TOKEN], originals]).astype(object)
    return SequenceDataset(
        name=name,
        sequences=split_by_lengths((ids + 1).astype(np.int64), lengths),
        user_ids=users,
        item_ids=item_ids,
        item_table=item_table,
        source={"reader": "recbole_atomic", "files": files},
    )


# --------------------------------------------------------------------------- user's own tables


def read_interactions(
    interactions_path: str | Path,
    items_path: str | Path | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    rating_col: str | None = None,
    item_id_col: str | None = None,
    text_cols: Sequence[str] | None = None,
    preprocess: PreprocessConfig | None = None,
    name: str | None = None,
) -> SequenceDataset:
    """Read the user's own interactions (CSV, TSV or Parquet, chosen by extension) and preprocess.

    Args:
        interactions_path: one row per interaction with ``user_col``, ``item_col``,
            ``time_col`` (numbers or ISO dates; ``None`` = rows already in time order) and
            optionally ``rating_col``.
        items_path: optional item table: ``item_id_col`` (default ``item_col``) + text fields
            (``text_cols``, default all other columns).
        preprocess: filters and numbering; default :class:`PreprocessConfig` (users >= 5).
        name: dataset name; default the interactions file's stem.
    """
    ip = Path(interactions_path)
    inter = read_table(ip, "interactions table")
    kind = "parquet" if table_kind(ip) == "parquet" else "csv"
    items, items_kind = None, "csv"
    if items_path is not None:
        items = read_table(items_path, "item table")
        items_kind = "parquet" if table_kind(items_path) == "parquet" else "csv"
    files = [str(ip)] + ([str(items_path)] if items_path is not None else [])
    return build_sequence_dataset(
        inter,
        items,
        preprocess,
        name=name or ip.name.split(".")[0],
        user_col=user_col,
        item_col=item_col,
        time_col=time_col or None,
        rating_col=rating_col or None,
        item_id_col=item_id_col or None,
        text_cols=text_cols or None,
        source={"reader": "interactions", "files": files},
        interactions_where=str(ip),
        items_where=str(items_path),
        file_kind=kind,
        items_file_kind=items_kind,
    )
