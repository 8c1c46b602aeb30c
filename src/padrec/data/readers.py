"""Readers for the published dataset formats and for the user's own interaction tables.

Each reader returns a :class:`SequenceDataset` (internal item ids 1..N, 0 = padding). The
released formats are read exactly as published: no filtering, and item numbering that
reproduces the release's ids. Every problem raises :class:`DataError` naming the file, the
line (or row) and the field. One module per format family:

- :mod:`padrec.data.pad_csv`: :func:`read_pad_csv` (PAD's Prime Pantry CSVs);
- :mod:`padrec.data.faerec_txt`: :func:`read_faerec_txt` (FAERec text files);
- :mod:`padrec.data.recbole_atomic`: :func:`read_recbole_atomic`, :func:`read_atomic`;
- here: :func:`read_interactions` (the user's own CSV/TSV/Parquet tables);
- :mod:`padrec.data.tables`: the file access they share (:func:`read_table`, :func:`table_kind`).

All of them are importable from this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from padrec.data.dataset import SequenceDataset
from padrec.data.faerec_txt import read_faerec_txt
from padrec.data.pad_csv import read_pad_csv
from padrec.data.preprocess import PreprocessConfig, build_sequence_dataset
from padrec.data.recbole_atomic import read_atomic, read_recbole_atomic
from padrec.data.tables import TABLE_SUFFIXES, read_table, table_kind

__all__ = [
    "TABLE_SUFFIXES",
    "read_atomic",
    "read_faerec_txt",
    "read_interactions",
    "read_pad_csv",
    "read_recbole_atomic",
    "read_table",
    "table_kind",
]


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
