"""Reader of RecBole atomic files (``recbole_atomic``): ``.inter`` sequences or interactions, ``.item`` texts.

Sequence files are read exactly as published; interaction files go through
:func:`~padrec.data.preprocess.build_sequence_dataset`.
"""

from __future__ import annotations

import csv
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
    item_text_column,
    row_label,
    split_by_lengths,
)
from padrec.data.tables import map_item_ids, reading_errors, require_file, unique_item_ids

__all__ = ["read_atomic", "read_recbole_atomic"]


def read_atomic(path: str | Path, what: str) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, header ``name:type``); columns renamed to ``name``."""
    p = require_file(path, what)
    with reading_errors(p, what, "RecBole atomic data", parse_as="tab-separated RecBole atomic data"):
        df = pd.read_csv(
            p, sep="\t", dtype=str, keep_default_na=False, na_filter=False, quoting=csv.QUOTE_NONE, engine="c"
        )
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
    inter_p = require_file(inter_path, "RecBole .inter file")
    inter = read_atomic(inter_p, "RecBole .inter file")
    items, item_p = None, None
    if item_path is not None:
        item_p = require_file(item_path, "RecBole .item file")
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
        assert item_p is not None
        table_ids = unique_item_ids(items["item_id"], item_p, "item_id")
        ids = map_item_ids(
            table_ids,
            flat,
            ends,
            inter_p,
            lambda k, row: "item_id" if k == ends[row] - 1 else "item_id_list",
            f"the item file {item_p.name}",
        )
        text_cols = [c for c in items.columns if c != "item_id"]
        item_table = pd.DataFrame(
            {c: np.concatenate([[""], item_text_column(items[c], c)]).astype(object) for c in text_cols}
        )
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
