"""Preprocessing: filters, k-core, stable time sort, truncation, numbering, item-table join."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from padrec.config import ConfigError, from_dict
from padrec.data import DataError, PreprocessConfig, build_sequence_dataset
from padrec.data.dataset import PAD_TOKEN


def frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["user_id", "item_id", "timestamp", "rating"][: len(rows[0])]
    return pd.DataFrame(rows, columns=cols)


def build(df: pd.DataFrame, items: pd.DataFrame | None = None, **cfg) -> object:
    rating = "rating" if "rating" in df.columns else None
    return build_sequence_dataset(df, items, PreprocessConfig(**cfg), name="t", rating_col=rating)


def seqs(ds) -> list[list[str]]:
    """Sequences as original item ids (independent of numbering)."""
    return [[ds.item_ids[i] for i in s] for s in ds.sequences]


def test_stable_time_sort_keeps_file_order_for_ties() -> None:
    df = frame([("u", "c", 2), ("u", "a", 1), ("u", "b", 1), ("v", "a", 0), ("u", "d", 2)])
    ds = build(df, min_user_interactions=0)
    assert ds.user_ids.tolist() == ["u", "v"]  # first appearance
    assert seqs(ds) == [["a", "b", "c", "d"], ["a"]]
    assert ds.item_ids.tolist() == [PAD_TOKEN, "a", "b", "c", "d"]  # first seen in the sorted sequences


def test_dates_and_no_time_column() -> None:
    df = pd.DataFrame(
        {"user_id": ["u", "u"], "item_id": ["x", "y"], "timestamp": ["2020-03-01T10:00:00", "2019-12-31"]}
    )
    assert seqs(build(df, min_user_interactions=0)) == [["y", "x"]]
    ds = build_sequence_dataset(df, None, PreprocessConfig(min_user_interactions=0), time_col=None)
    assert seqs(ds) == [["x", "y"]]


def test_rating_filter_and_user_minimum() -> None:
    df = frame(
        [("u", "a", 1, 5), ("u", "b", 2, 3), ("u", "c", 3, 4), ("v", "a", 1, 5), ("v", "b", 2, 5), ("w", "c", 1, 1)]
    )
    ds = build(df, rating_threshold=4, min_user_interactions=2)
    assert ds.user_ids.tolist() == ["u", "v"]
    assert seqs(ds) == [["a", "c"], ["a", "b"]]


def test_item_core_iterates_until_stable() -> None:
    # Item core 2 drops 'z' (1 interaction); user 'w' then has 1 interaction and goes; that
    # leaves 'y' with 1 interaction, which goes too; then user 'v' falls below 2.
    df = frame(
        [
            ("u", "x", 1),
            ("u", "x2", 2),
            ("t", "x", 1),
            ("t", "x2", 2),
            ("w", "y", 1),
            ("w", "z", 2),
            ("v", "y", 1),
            ("v", "x", 2),
        ]
    )
    ds = build(df, item_core=2, min_user_interactions=2)
    assert ds.user_ids.tolist() == ["u", "t"]
    assert seqs(ds) == [["x", "x2"], ["x", "x2"]]
    counts = pd.Series([i for s in seqs(ds) for i in s]).value_counts()
    assert counts.min() >= 2


def test_keep_latest_and_deduplicate() -> None:
    df = frame([("u", "a", 1), ("u", "b", 2), ("u", "a", 3), ("u", "c", 4), ("u", "d", 5)])
    assert seqs(build(df, keep_latest=3, min_user_interactions=0)) == [["a", "c", "d"]]
    assert seqs(build(df, deduplicate=True, min_user_interactions=0)) == [["a", "b", "c", "d"]]
    assert seqs(build(df, deduplicate=True, keep_latest=2, min_user_interactions=0)) == [["c", "d"]]


def test_numbering_rules() -> None:
    df = frame([("u", "10", 1), ("u", "9", 2), ("v", "100", 1)])
    items = pd.DataFrame({"item_id": ["100", "9", "10", "7"], "title": ["h", "n", "t", "s"]})
    first = build(df, items, min_user_interactions=0)
    assert first.item_ids.tolist() == [PAD_TOKEN, "10", "9", "100"]
    assert first.titles() == ["", "t", "n", "h"]
    srt = build(df, items, min_user_interactions=0, item_order="sorted")
    assert srt.item_ids.tolist() == [PAD_TOKEN, "9", "10", "100"]  # numeric order
    tab = build(df, items, min_user_interactions=0, item_order="item_table")
    assert tab.item_ids.tolist() == [PAD_TOKEN, "100", "9", "10", "7"]  # table rows, unused kept
    assert tab.titles() == ["", "h", "n", "t", "s"]
    assert [s.tolist() for s in tab.sequences] == [[3, 2], [1]]


def test_unknown_items_policies(caplog: pytest.LogCaptureFixture) -> None:
    df = frame([("u", "a", 1), ("u", "ghost", 2), ("u", "b", 3)])
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]})
    with pytest.raises(DataError, match="missing from the item table.*ghost"):
        build(df, items, min_user_interactions=0)
    with caplog.at_level(logging.WARNING, logger="padrec.data.preprocess"):
        dropped = build(df, items, min_user_interactions=0, unknown_items="drop")
    assert seqs(dropped) == [["a", "b"]]
    assert "ghost" in caplog.text
    kept = build(df, items, min_user_interactions=0, unknown_items="keep", item_order="item_table")
    assert kept.item_ids.tolist() == [PAD_TOKEN, "a", "b", "ghost"]
    assert kept.titles() == ["", "A", "B", ""]


def test_integer_and_float_ids_match_between_tables() -> None:
    df = pd.DataFrame({"user_id": [1, 1], "item_id": [3.0, 4.0], "timestamp": [1, 2]})
    items = pd.DataFrame({"item_id": [3, 4], "title": ["c", "d"]})
    ds = build(df, items, min_user_interactions=0)
    assert ds.item_ids.tolist() == [PAD_TOKEN, "3", "4"] and ds.user_ids.tolist() == ["1"]
    assert ds.titles() == ["", "c", "d"]


def test_config_is_strict() -> None:
    cfg = from_dict(PreprocessConfig, {"rating_threshold": 4, "keep_latest": 23})
    assert cfg.rating_threshold == 4.0 and cfg.min_user_interactions == 5
    with pytest.raises(ConfigError, match="min_user"):
        from_dict(PreprocessConfig, {"min_user": 5})
    with pytest.raises(ConfigError, match="item_order"):
        from_dict(PreprocessConfig, {"item_order": "random"})


def test_pad_like_pipeline_defaults() -> None:
    """PAD's recipe (ratings >= 4, users >= 5, latest 23) on a generated log."""
    rows = []
    for u in range(6):
        n = 3 + 5 * u  # 3, 8, 13, ... interactions
        rows += [(f"u{u}", f"i{(u * 7 + k) % 11}", k, 5 if k % 4 else 2) for k in range(n)]
    df = frame(rows)
    ds = build(df, rating_threshold=4, min_user_interactions=5, keep_latest=23)
    assert all(5 <= len(s) <= 23 for s in ds.sequences)
    kept = df[df.rating >= 4].groupby("user_id").size()
    assert ds.user_ids.tolist() == [u for u in kept.index if kept[u] >= 5]
    assert ds.source["preprocess"]["keep_latest"] == 23


def test_pad_release_quirks() -> None:
    rows = [("u10", f"i{k}", k) for k in range(25)] + [("u9", f"i{k}", k) for k in range(23)]
    df = frame(rows)
    plain = build(df, keep_latest=23, user_order="sorted")
    assert plain.user_ids.tolist() == ["u10", "u9"]  # not integers: compared as text
    assert [len(s) for s in plain.sequences] == [23, 23]
    quirk = build(df, keep_latest=23, pad_keep_latest_quirk=True)
    assert quirk.user_ids.tolist() == ["u10", "u9"]
    assert [len(s) for s in quirk.sequences] == [22, 23]  # > 23 items -> latest 22 (PAD clean.py)
    assert seqs(quirk)[0][0] == "i3"
    numeric = build(frame([(10, "a", 1), (9, "b", 1)]), min_user_interactions=0, user_order="sorted")
    assert numeric.user_ids.tolist() == ["9", "10"]
