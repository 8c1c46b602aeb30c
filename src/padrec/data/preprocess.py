"""Turn a table of interactions (+ an optional item table) into a :class:`SequenceDataset`.

Pipeline, in this order (each step documented on :class:`PreprocessConfig`):

1. check columns and values (ids present, timestamps and ratings numeric or dates);
2. items missing from an explicitly given item table: error (default), drop or keep;
3. rating filter (``rating >= rating_threshold``);
4. stable time sort per user (ties keep file order); users by first appearance or sorted id;
5. optional de-duplication of repeated (user, item) pairs (the earliest is kept);
6. k-core: drop items with fewer than ``item_core`` and users with fewer than
   ``min_user_interactions`` interactions, repeated until nothing changes;
7. keep each user's latest ``keep_latest`` interactions (after the k-core);
8. id mapping (0 = padding, items 1..N by ``item_order``) and the item table join.

Every empty result raises :class:`DataError` naming the step that emptied the data.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from padrec.data.dataset import PAD_TOKEN, SequenceDataset
from padrec.data.errors import DataError
from padrec.data.values import natural_order, numeric_column, row_label

log = logging.getLogger(__name__)


@dataclass
class PreprocessConfig:
    """How raw interactions become sequences.

    Attributes:
        rating_threshold: keep interactions with ``rating >= rating_threshold`` (PAD keeps
            ratings >= 4); ``None`` keeps all. Needs a rating column.
        min_user_interactions: drop users with fewer interactions (PAD: 5). 0 or 1 keeps all.
        item_core: drop items with fewer interactions; alternates with the user minimum until
            both hold (k-core). 0 disables the item condition.
        keep_latest: keep each user's latest N interactions; 0 keeps all (PAD: 23). Applied
            after the k-core, so item counts may fall below ``item_core`` afterwards.
        pad_keep_latest_quirk: reproduce the PAD release's truncation (``clean.py``): a user
            with more than ``keep_latest`` interactions keeps only the latest
            ``keep_latest - 1``.
        deduplicate: keep only the earliest of repeated (user, item) interactions.
        user_order: order of the users (and sequences): ``first_seen`` in the file, or
            ``sorted`` by original id (numerically when every id is an integer; PAD's order).
        item_order: internal item numbering. ``first_seen``: 1..N in order of first appearance
            when reading the time-sorted sequences user by user (users in order of first
            appearance in the file); ``sorted``: by original id (numerically when every id is
            an integer, else as strings); ``item_table``: item table row r gets id r + 1 and
            every table item is kept, interacted or not (PAD's numbering); needs an item table.
        unknown_items: interactions whose item is missing from a given item table:
            ``error`` (default), ``drop`` them (logged) or ``keep`` them with empty text (logged;
            with ``item_order=item_table`` they are numbered after the table's items).
    """

    rating_threshold: float | None = None
    min_user_interactions: int = 5
    item_core: int = 0
    keep_latest: int = 0
    pad_keep_latest_quirk: bool = False
    deduplicate: bool = False
    user_order: Literal["first_seen", "sorted"] = "first_seen"
    item_order: Literal["first_seen", "sorted", "item_table"] = "first_seen"
    unknown_items: Literal["error", "drop", "keep"] = "error"

    def __post_init__(self) -> None:
        for key in ("min_user_interactions", "item_core", "keep_latest"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.item_order not in ("first_seen", "sorted", "item_table"):
            raise ValueError(f"item_order must be first_seen, sorted or item_table, got {self.item_order!r}")
        if self.user_order not in ("first_seen", "sorted"):
            raise ValueError(f"user_order must be first_seen or sorted, got {self.user_order!r}")
        if self.unknown_items not in ("error", "drop", "keep"):
            raise ValueError(f"unknown_items must be error, drop or keep, got {self.unknown_items!r}")


def split_by_lengths(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Cut ``flat`` into consecutive pieces of ``lengths`` (views; faster than ``np.split``)."""
    ends = np.cumsum(lengths).tolist()
    starts = [0] + ends[:-1]
    return [flat[s:e] for s, e in zip(starts, ends)]


def check_columns(df: pd.DataFrame, required: Sequence[str], where: str, what: str = "table") -> None:
    """Raise :class:`DataError` naming the missing columns of ``df`` (read from ``where``).

    When the table has a single column whose name contains another delimiter, the message
    says the file probably uses that delimiter.
    """
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return
    found = [str(c) for c in df.columns]
    msg = f"{where}: {what} is missing column(s) {missing}; found columns {found}"
    if len(found) == 1:
        for sep, label in ((";", "';'"), ("\t", "a tab"), ("|", "'|'"), (",", "','"), (" ", "a space")):
            if sep in found[0]:
                msg += f" (the header holds {label}: wrong delimiter for this format?)"
                break
    raise DataError(msg)


def id_strings(values: pd.Series, where: str, field: str, file_kind: str) -> np.ndarray:
    """Identifiers as an object array of ``str``; integral floats print without ``.0``.

    Raises :class:`DataError` at the first missing or empty id.
    """
    s = values
    missing = s.isna().to_numpy().copy()
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        missing |= (s.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{where}: {row_label(i, file_kind)}, field '{field}': expected an id, got an empty value")
    if pd.api.types.is_float_dtype(s.dtype):
        arr = s.to_numpy()
        if np.all(np.mod(arr, 1) == 0):
            s = s.astype(np.int64)
    return s.astype(str).to_numpy(dtype=object)


def _empty_check(n: int, step: str, where: str) -> None:
    if n == 0:
        raise DataError(f"{where}: no interactions left after {step}")


def build_sequence_dataset(
    interactions: pd.DataFrame,
    items: pd.DataFrame | None = None,
    config: PreprocessConfig | None = None,
    *,
    name: str = "dataset",
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    rating_col: str | None = None,
    item_id_col: str | None = None,
    text_cols: Sequence[str] | None = None,
    source: dict | None = None,
    interactions_where: str = "<interactions>",
    items_where: str = "<items>",
    file_kind: str = "csv",
    items_file_kind: str = "csv",
) -> SequenceDataset:
    """Preprocess ``interactions`` (one row per interaction) into a :class:`SequenceDataset`.

    Args:
        interactions: columns ``user_col``, ``item_col``, optionally ``time_col`` (numbers or
            dates; ``None`` = the rows are already in time order) and ``rating_col``.
        items: optional item table: ``item_id_col`` (default ``item_col``) + text fields.
        config: filters and numbering (see :class:`PreprocessConfig`); default instance if None.
        text_cols: item table columns kept as text (default: every column but the id).
        interactions_where, items_where: file names used in error messages.
        file_kind, items_file_kind: ``csv`` (errors cite lines) or ``parquet`` (rows).

    Returns:
        the dataset; users in order of first appearance, each sequence time-sorted.
    """
    cfg = config or PreprocessConfig()
    where = interactions_where
    required = [user_col, item_col] + ([time_col] if time_col else [])
    if cfg.rating_threshold is not None:
        if not rating_col:
            raise DataError(
                f"{where}: rating_threshold={cfg.rating_threshold:g} needs a rating column (set the rating column name)"
            )
        required.append(rating_col)
    check_columns(interactions, required, where, "interactions table")
    _empty_check(len(interactions), "reading (the table has no rows)", where)

    users = id_strings(interactions[user_col], where, user_col, file_kind)
    item_raw = id_strings(interactions[item_col], where, item_col, file_kind)
    n_rows = len(users)
    times = numeric_column(interactions[time_col], where, time_col, file_kind, allow_dates=True) if time_col else None
    keep = np.ones(n_rows, dtype=bool)

    table_ids, table_text = None, None
    if items is not None:
        table_ids, table_text = _item_table(items, item_id_col or item_col, text_cols, items_where, items_file_kind)
        known = pd.Index(table_ids).get_indexer(item_raw) >= 0
        if not known.all():
            bad = np.flatnonzero(~known)
            examples = list(dict.fromkeys(item_raw[bad].tolist()))[:5]
            msg = (
                f"{where}: {len(bad)} interaction(s) name item ids missing from the item table {items_where} "
                f"(first at {row_label(int(bad[0]), file_kind)}, field '{item_col}'; e.g. {examples})"
            )
            if cfg.unknown_items == "error":
                raise DataError(msg + "; set preprocess.unknown_items to 'drop' or 'keep' to accept them")
            log.warning("%s; %s them", msg, "dropping" if cfg.unknown_items == "drop" else "keeping")
            if cfg.unknown_items == "drop":
                keep &= known
                _empty_check(int(keep.sum()), "dropping items missing from the item table", where)
    elif cfg.item_order == "item_table":
        raise DataError(f"{where}: preprocess.item_order='item_table' needs an item table")

    if cfg.rating_threshold is not None:
        ratings = numeric_column(interactions[rating_col], where, rating_col, file_kind, allow_dates=False)
        keep &= ratings >= cfg.rating_threshold
        _empty_check(int(keep.sum()), f"the rating filter (rating >= {cfg.rating_threshold:g})", where)

    idx = np.flatnonzero(keep)
    ucode, user_uniques = pd.factorize(users[idx], sort=False)
    if cfg.user_order == "sorted":
        rank = np.empty(len(user_uniques), dtype=np.int64)
        rank[natural_order(np.asarray(user_uniques, dtype=object))] = np.arange(len(user_uniques))
        ucode = rank[ucode]
    order = np.lexsort((times[idx], ucode)) if times is not None else np.argsort(ucode, kind="stable")
    idx, ucode = idx[order], ucode[order]
    icode = pd.factorize(item_raw[idx], sort=False)[0]

    if cfg.deduplicate:
        pair = ucode.astype(np.int64) * (int(icode.max()) + 1) + icode
        first = ~pd.Series(pair).duplicated(keep="first").to_numpy()
        idx, ucode, icode = idx[first], ucode[first], icode[first]

    idx, ucode, icode = _k_core(idx, ucode, icode, cfg, where)

    if cfg.keep_latest > 0:
        from_end = pd.Series(ucode).groupby(ucode).cumcount(ascending=False).to_numpy()
        limit = np.full(len(ucode), cfg.keep_latest)
        if cfg.pad_keep_latest_quirk:
            limit[np.bincount(ucode)[ucode] > cfg.keep_latest] -= 1
        idx, ucode = idx[from_end < limit], ucode[from_end < limit]

    # Codes are recomputed on what survived, so first-seen numbering has no gaps.
    icode, uniques = pd.factorize(item_raw[idx], sort=False)
    item_ids, internal = _number_items(np.asarray(uniques, dtype=object), icode, table_ids, cfg)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ucode)) + 1])
    sequences = split_by_lengths(internal.astype(np.int64), np.diff(np.append(starts, len(internal))))
    user_ids = users[idx[starts]]

    item_table = _join_text(item_ids, table_ids, table_text)
    src = dict(source or {})
    src.setdefault("reader", "interactions")
    src["preprocess"] = dataclasses.asdict(cfg)
    return SequenceDataset(
        name=name,
        sequences=sequences,
        user_ids=np.asarray(user_ids, dtype=object),
        item_ids=item_ids,
        item_table=item_table,
        source=src,
    )


def _item_table(
    items: pd.DataFrame, id_col: str, text_cols: Sequence[str] | None, where: str, file_kind: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """Validated item ids (unique strings) and their text columns as strings ("" if missing)."""
    check_columns(items, [id_col], where, "item table")
    cols = list(text_cols) if text_cols else [c for c in items.columns if c != id_col]
    check_columns(items, cols, where, "item table")
    ids = id_strings(items[id_col], where, id_col, file_kind)
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        rows = np.flatnonzero(ids == ids[first])
        raise DataError(
            f"{where}: field '{id_col}': duplicate item id {ids[first]!r} at "
            f"{', '.join(row_label(int(r), file_kind) for r in rows[:5])}; item ids must be unique"
        )
    text = pd.DataFrame({str(c): item_text_column(items[c], c) for c in cols})
    return ids, text


def text_column(values: pd.Series) -> np.ndarray:
    """A column as an object array of ``str`` with ``""`` for missing values."""
    out = values.astype(object).where(values.notna(), "")
    return out.map(str).to_numpy(dtype=object)


def item_text_column(values: pd.Series, column: object) -> np.ndarray:
    """An item-table text column (:func:`text_column`), kept as published: HTML character
    references (``&amp;``) stay in the item table, which is what text encoders read (as the
    PAD release encodes them); :meth:`SequenceDataset.titles` decodes them for display."""
    return text_column(values)


def _k_core(
    idx: np.ndarray, ucode: np.ndarray, icode: np.ndarray, cfg: PreprocessConfig, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Alternate the item and user minimums until both hold."""
    steps = [
        (True, cfg.item_core, f"the item k-core (item_core={cfg.item_core})"),
        (False, cfg.min_user_interactions, f"the user minimum (min_user_interactions={cfg.min_user_interactions})"),
    ]
    while True:
        changed = False
        for by_item, minimum, step in steps:
            if minimum > 1:
                codes = icode if by_item else ucode
                sel = np.bincount(codes)[codes] >= minimum
                if not sel.all():
                    idx, ucode, icode = idx[sel], ucode[sel], icode[sel]
                    _empty_check(len(idx), step, where)
                    changed = True
        if not changed or cfg.item_core <= 1:
            return idx, ucode, icode


def _number_items(
    uniques: np.ndarray, icode: np.ndarray, table_ids: np.ndarray | None, cfg: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Original item id per internal id (``[PAD]`` first) and the internal id of each interaction.

    ``uniques`` holds the surviving original ids in order of first appearance (``icode``
    indexes it).
    """
    if cfg.item_order == "item_table":
        assert table_ids is not None
        extra = uniques[pd.Index(table_ids).get_indexer(uniques) < 0]
        ordered = np.concatenate([table_ids, extra]).astype(object)
    elif cfg.item_order == "sorted":
        ordered = uniques[natural_order(uniques)]
    else:
        ordered = uniques
    lookup = pd.Index(ordered).get_indexer(uniques).astype(np.int64) + 1
    item_ids = np.empty(len(ordered) + 1, dtype=object)
    item_ids[0] = PAD_TOKEN
    item_ids[1:] = ordered
    return item_ids, lookup[icode]


def _join_text(item_ids: np.ndarray, table_ids: np.ndarray | None, table_text: pd.DataFrame | None) -> pd.DataFrame:
    """Item table indexed by internal id 0..N; row 0 and items absent from the table get ``""``."""
    n1 = len(item_ids)
    if table_text is None:
        return pd.DataFrame(index=pd.RangeIndex(n1))
    pos = pd.Index(table_ids).get_indexer(item_ids[1:])
    cols = {}
    for c in table_text.columns:
        src = table_text[c].to_numpy(dtype=object)
        col = np.full(n1, "", dtype=object)
        ok = pos >= 0
        col[1:][ok] = src[pos[ok]]
        cols[c] = col
    return pd.DataFrame(cols, index=pd.RangeIndex(n1))
