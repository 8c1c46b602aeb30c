"""Processed-dataset cache: format, reuse, rebuild on change or damage, atomic writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import padrec.data.loading as loading
from padrec.data import DataConfig, PreprocessConfig, SequenceDataset, load_dataset
from padrec.data.cache import (
    CACHE_FORMAT_VERSION,
    CacheInvalid,
    cached_build,
    default_cache_dir,
    load_entry,
    save_dataset,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def same(a: SequenceDataset, b: SequenceDataset) -> bool:
    return (
        a.name == b.name
        and len(a.sequences) == len(b.sequences)
        and all(np.array_equal(x, y) and y.dtype == np.int64 for x, y in zip(a.sequences, b.sequences))
        and a.user_ids.tolist() == b.user_ids.tolist()
        and a.item_ids.tolist() == b.item_ids.tolist()
        and a.item_table.equals(b.item_table)
    )


def write_inputs(tmp: Path) -> DataConfig:
    pd.DataFrame({"user_id": ["u", "u", "v", "v"], "item_id": ["a", "b", "b", "c"], "timestamp": [1, 2, 1, 2]}).to_csv(
        tmp / "inter.csv", index=False
    )
    pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "", "C"]}).to_csv(tmp / "items.csv", index=False)
    return DataConfig(
        name="toy",
        format="interactions",
        path=str(tmp / "inter.csv"),
        items_path=str(tmp / "items.csv"),
        preprocess=PreprocessConfig(min_user_interactions=2),
        cache_dir=str(tmp / "cache"),
    )


def entries(cfg: DataConfig) -> list[Path]:
    return [p for p in (Path(cfg.cache_dir) / "datasets").iterdir()]


def test_round_trip_and_format(tmp_path: Path) -> None:
    cfg = write_inputs(tmp_path)
    built = load_dataset(DataConfig(**{**cfg.__dict__, "use_cache": False}))
    first = load_dataset(cfg)
    assert same(built, first)
    (entry,) = entries(cfg)
    assert sorted(p.name for p in entry.iterdir()) == ["items.parquet", "meta.json", "sequences.npz", "users.parquet"]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["format_version"] == CACHE_FORMAT_VERSION
    assert meta["counts"] == {"users": 2, "items": 3, "interactions": 4}
    assert meta["name"] == "toy" and len(meta["fingerprint"]) == 64 and meta["created"]
    assert meta["fingerprint_inputs"]["options"]["preprocess"]["min_user_interactions"] == 2
    with np.load(entry / "sequences.npz", allow_pickle=False) as z:
        assert z["items"].tolist() == [1, 2, 2, 3] and z["offsets"].tolist() == [0, 2, 4]
    items = pd.read_parquet(entry / "items.parquet")
    assert items.columns.tolist() == ["item", "original_id", "title"]
    assert items["original_id"].tolist() == ["[PAD]", "a", "b", "c"]
    users = pd.read_parquet(entry / "users.parquet")
    assert users["original_id"].tolist() == ["u", "v"]
    second = load_dataset(cfg)
    assert same(first, second)
    assert second.source["reader"] == "interactions"


def test_reuses_cache_without_building(tmp_path: Path) -> None:
    ds = SequenceDataset(
        "x",
        [np.array([1, 2], np.int64)],
        np.array(["u"], object),
        np.array(["[PAD]", "a", "b"], object),
        pd.DataFrame(index=range(3)),
    )
    src = tmp_path / "src.txt"
    src.write_text("1 1 2\n")
    calls = []

    def build() -> SequenceDataset:
        calls.append(1)
        return ds

    cached_build("x", [src], {"o": 1}, build, tmp_path / "c")
    out = cached_build("x", [src], {"o": 1}, build, tmp_path / "c")
    assert len(calls) == 1 and same(ds, out)
    cached_build("x", [src], {"o": 2}, build, tmp_path / "c")  # other options: own entry
    assert len(calls) == 2


def test_rebuilds_when_input_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = write_inputs(tmp_path)
    assert load_dataset(cfg).num_interactions == 4
    with open(tmp_path / "inter.csv", "a") as fh:
        fh.write("v,a,3\n")
    with caplog.at_level(logging.WARNING, logger="padrec.data.cache"):
        ds = load_dataset(cfg)
    assert ds.num_interactions == 5
    assert "changed" in caplog.text and "rebuilding" in caplog.text
    assert len(entries(cfg)) == 1  # replaced in place, no leftovers


@pytest.mark.parametrize("damage", ["truncate_npz", "bad_json", "wrong_counts", "missing_parquet", "bad_ids"])
def test_rebuilds_corrupt_cache(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    cfg = write_inputs(tmp_path)
    good = load_dataset(cfg)
    (entry,) = entries(cfg)
    if damage == "truncate_npz":
        (entry / "sequences.npz").write_bytes((entry / "sequences.npz").read_bytes()[:40])
    elif damage == "bad_json":
        (entry / "meta.json").write_text("{not json")
    elif damage == "wrong_counts":
        meta = json.loads((entry / "meta.json").read_text())
        meta["counts"]["users"] = 99
        (entry / "meta.json").write_text(json.dumps(meta))
    elif damage == "missing_parquet":
        (entry / "items.parquet").unlink()
    else:
        np.savez(entry / "sequences.npz", items=np.array([1, 2, 2, 9]), offsets=np.array([0, 2, 4]))
    with pytest.raises(CacheInvalid):
        load_entry(entry)
    with caplog.at_level(logging.WARNING, logger="padrec.data.cache"):
        again = load_dataset(cfg)
    assert same(good, again)
    assert "rebuilding" in caplog.text
    load_entry(entry)  # repaired


def test_no_partial_entries_left(tmp_path: Path) -> None:
    ds = SequenceDataset(
        "x",
        [np.array([1], np.int64)],
        np.array(["u"], object),
        np.array(["[PAD]", "a"], object),
        pd.DataFrame({"title": ["", "A"]}),
    )
    target = tmp_path / "datasets" / "x-1"
    save_dataset(ds, target, "f" * 64, {})
    save_dataset(ds, target, "e" * 64, {})  # replace an existing entry
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == ["x-1"]
    assert json.loads((target / "meta.json").read_text())["fingerprint"] == "e" * 64
    with pytest.raises(CacheInvalid, match="changed"):
        load_entry(target, "f" * 64)


def test_unwritable_cache_still_returns_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = write_inputs(tmp_path)
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the cache directory should be")
    cfg.cache_dir = str(blocker)
    with caplog.at_level(logging.WARNING, logger="padrec.data.cache"):
        assert load_dataset(cfg).num_interactions == 4
    assert "could not write" in caplog.text


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PADREC_CACHE", str(tmp_path / "pc"))
    assert default_cache_dir() == tmp_path / "pc"
    monkeypatch.delenv("PADREC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "padrec"


def test_builtin_second_load_is_a_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second load of Prime Pantry reads the cache entry and never the CSVs.

    How much faster that is is measured by benchmarks/bench_caches.py, not asserted here.
    """
    cfg = DataConfig(cache_dir=str(tmp_path))
    csv = load_dataset(DataConfig(use_cache=False))
    first = load_dataset(cfg)
    assert len(list((tmp_path / "datasets").iterdir())) == 1

    def no_csv(*args: object, **kwargs: object) -> SequenceDataset:
        raise AssertionError("the cached entry should have been used, not the CSV reader")

    monkeypatch.setattr(loading, "read_pad_csv", no_csv)
    cached = load_dataset(cfg)
    assert same(csv, first) and same(csv, cached)
