"""Reader of PAD's released Prime Pantry files (``pad_csv``): a history CSV and a metadata CSV.

Read exactly as published: no filtering, item id = metadata row + 1.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from padrec.data.dataset import PAD_TOKEN, SequenceDataset
from padrec.data.errors import DataError
from padrec.data.preprocess import check_columns, id_strings, item_text_column, row_label, split_by_lengths
from padrec.data.tables import map_item_ids, read_table, require_file, unique_item_ids

__all__ = ["read_pad_csv"]


# Quoted Python/JSON strings (their brackets are text, not nesting).
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")


def _nesting(text: str) -> tuple[int, int]:
    """(deepest bracket nesting outside quoted strings, character position where it is reached)."""
    if text.count("[") + text.count("(") + text.count("{") <= 1:
        return (1 if "[" in text or "(" in text or "{" in text else 0), text.find("[")
    bare = _QUOTED.sub(lambda m: " " * len(m.group(0)), text)
    depth = deepest = where = 0
    for k, ch in enumerate(bare):
        if ch in "[({":
            depth += 1
            if depth > deepest:
                deepest, where = depth, k
        elif ch in "])}":
            depth -= 1
    return deepest, where


def _parse_history(text: str, path: Path, i: int) -> list[str]:
    """One ``history`` cell: a Python-literal list of item ids (strings).

    The nesting is checked before any parser sees the cell (a list of ids is one level deep),
    so a cell such as ``[[[[...]]]]`` nested 100,000 deep is a :class:`DataError`, never a
    RecursionError.
    """
    where = f"{path}: {row_label(i, 'csv')}, field 'history'"
    depth, at = _nesting(text)
    if depth > 1:
        raise DataError(
            f"{where}: brackets nested {depth} deep (reached at character {at + 1} of the cell); expected a "
            f"flat Python list of item ids like ['B00..', 'B01..'], got {text[:60]!r}"
        )
    # JSON is a fast exact reading of the common case (single-quoted ids without quotes or
    # backslashes inside); anything else goes through ast.literal_eval (never eval).
    value: object
    if '"' not in text and "\\" not in text:
        try:
            value = json.loads(text.replace("'", '"'))
        except (ValueError, RecursionError):
            value = None
    else:
        value = None
    if value is None:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as exc:
            raise DataError(
                f"{where}: expected a Python list of item ids like ['B00..', 'B01..'], got {text[:60]!r} "
                f"({type(exc).__name__})"
            ) from None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(x, (str, int)) and not isinstance(x, bool) for x in value
    ):
        raise DataError(f"{where}: expected a list of item ids, got {text[:60]!r}")
    if not value:
        raise DataError(f"{where}: the history is empty")
    return [str(x) for x in value]


def read_pad_csv(history_path: str | Path, metadata_path: str | Path, name: str = "prime_pantry") -> SequenceDataset:
    """Read PAD's released Prime Pantry files.

    ``history_path``: CSV with header ``,user,history`` (index column, user id, Python-literal
    list of item ASINs in time order). ``metadata_path``: CSV with header ``asin,title`` (more
    columns are kept as text); item id = metadata row index + 1, every metadata item is kept.

    Returns the dataset (Prime Pantry: 12,871 users, 8,347 items, 115,004 interactions).
    """
    hist_p = require_file(history_path, "PAD history CSV")
    meta_p = require_file(metadata_path, "PAD metadata CSV")
    meta = read_table(meta_p, "PAD metadata CSV")
    check_columns(meta, ["asin", "title"], str(meta_p), "PAD metadata CSV")
    hist = read_table(hist_p, "PAD history CSV")
    check_columns(hist, ["user", "history"], str(hist_p), "PAD history CSV")

    item_ids = unique_item_ids(meta["asin"], meta_p, "asin")
    users = id_strings(hist["user"], str(hist_p), "user", "csv")
    histories = [_parse_history(t, hist_p, i) for i, t in enumerate(hist["history"].tolist())]
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    flat = np.fromiter((a for h in histories for a in h), dtype=object, count=int(lengths.sum()))
    ids = map_item_ids(
        item_ids, flat, np.cumsum(lengths), hist_p, lambda k, row: "history", f"the metadata file {meta_p.name}"
    )
    sequences = split_by_lengths((ids + 1).astype(np.int64), lengths)

    text_cols = [c for c in meta.columns if c != "asin"]
    item_table = pd.DataFrame(
        {c: np.concatenate([[""], item_text_column(meta[c], c)]).astype(object) for c in text_cols}
    )
    return SequenceDataset(
        name=name,
        sequences=sequences,
        user_ids=users,
        item_ids=np.concatenate([[PAD_TOKEN], item_ids]).astype(object),
        item_table=item_table,
        source={"reader": "pad_csv", "files": [str(hist_p), str(meta_p)]},
    )
