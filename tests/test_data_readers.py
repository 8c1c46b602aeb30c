"""Readers: small generated files for each format, then the real released datasets."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from padrec.data import (
    DataConfig,
    PreprocessConfig,
    load_dataset,
    read_faerec_txt,
    read_interactions,
    read_pad_csv,
    read_recbole_atomic,
    resolve_dataset,
)
from padrec.data.dataset import PAD_TOKEN
from padrec.data.loading import builtin_dir, detect_format

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data folder {SHARED} is missing")


def seqs(ds) -> list[list[int]]:
    return [s.tolist() for s in ds.sequences]


def write_pad(tmp: Path) -> tuple[Path, Path]:
    hist = tmp / "Toy_cleaned_history.csv"
    meta = tmp / "metadata_Toy.csv"
    hist.write_text(",user,history\n0,u1,\"['B2', 'B1', 'B3']\"\n1,u2,\"['B3', 'B3']\"\n", encoding="utf-8")
    meta.write_text('asin,title\nB1,"Tea, green"\nB2,\nB3,Coffee\nB4,Unused\n', encoding="utf-8")
    return hist, meta


def test_read_pad_csv_small(tmp_path: Path) -> None:
    hist, meta = write_pad(tmp_path)
    ds = read_pad_csv(hist, meta, name="toy")
    assert ds.name == "toy"
    assert seqs(ds) == [[2, 1, 3], [3, 3]]  # item id = metadata row + 1
    assert ds.item_ids.tolist() == [PAD_TOKEN, "B1", "B2", "B3", "B4"]  # unused B4 kept
    assert ds.user_ids.tolist() == ["u1", "u2"]
    assert ds.titles() == ["", "Tea, green", "", "Coffee", "Unused"]
    assert all(s.dtype == np.int64 for s in ds.sequences)


def test_read_pad_csv_literal_fallback(tmp_path: Path) -> None:
    """Ids with quotes or escapes go through ast.literal_eval, never eval."""
    hist = tmp_path / "h.csv"
    meta = tmp_path / "m.csv"
    hist.write_text(',user,history\n0,u1,"[""it\'s"", \'b\\\\x\']"\n', encoding="utf-8")
    meta.write_text('asin,title\n"it\'s",A\nb\\x,B\n', encoding="utf-8")
    ds = read_pad_csv(hist, meta)
    assert seqs(ds) == [[1, 2]]


def test_read_faerec_txt_keeps_ids(tmp_path: Path) -> None:
    p = tmp_path / "Toy.txt"
    p.write_text("1 1 2 3\n2 3 1\n3 2\n\n", encoding="utf-8")
    ds = read_faerec_txt(p)
    assert ds.name == "toy"
    assert seqs(ds) == [[1, 2, 3], [3, 1], [2]]
    assert ds.item_ids.tolist() == [PAD_TOKEN, "1", "2", "3"]
    assert ds.item_table.shape == (4, 0)
    assert ds.source["ids_kept"] is True


def test_read_faerec_txt_maps_gappy_ids(tmp_path: Path) -> None:
    p = tmp_path / "gaps.txt"
    p.write_text("a 10 30\nb 30 20\n", encoding="utf-8")
    ds = read_faerec_txt(p, name="g")
    assert ds.item_ids.tolist() == [PAD_TOKEN, "10", "20", "30"]
    assert seqs(ds) == [[1, 3], [3, 2]]
    assert ds.source["ids_kept"] is False


def write_games(tmp: Path) -> tuple[Path, Path]:
    item = tmp / "Toy.item"
    inter = tmp / "Toy.test.inter"
    item.write_text('item_id:token\ttitle:token_seq\n5\tFive "quoted"\n7\tSeven\n9\t\n', encoding="utf-8")
    inter.write_text("user_id:token\titem_id_list:token_seq\titem_id:token\nA\t5 7\t9\nB\t\t7\n", encoding="utf-8")
    return item, inter


def test_read_recbole_atomic_sequences(tmp_path: Path) -> None:
    item, inter = write_games(tmp_path)
    ds = read_recbole_atomic(item, inter, name="toy")
    assert seqs(ds) == [[1, 2, 3], [2]]  # item_id_list + [item_id], numbered by .item row order
    assert ds.item_ids.tolist() == [PAD_TOKEN, "5", "7", "9"]
    assert ds.titles() == ["", 'Five "quoted"', "Seven", ""]
    assert detect_format(tmp_path) == "recbole_atomic"


def test_read_recbole_atomic_interactions(tmp_path: Path) -> None:
    inter = tmp_path / "x.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ta\t3\nu\tb\t1\nv\ta\t2\n", encoding="utf-8")
    ds = read_recbole_atomic(None, inter, name="x")
    assert seqs(ds) == [[1, 2], [2]]  # time-sorted, first-seen numbering
    assert ds.item_ids.tolist() == [PAD_TOKEN, "b", "a"]


def test_read_interactions_csv_and_parquet(tmp_path: Path) -> None:
    inter = pd.DataFrame({"user": ["u", "u", "v", "v", "u"], "item": [3, 1, 1, 2, 2], "ts": [5, 1, 2, 3, 4]})
    items = pd.DataFrame({"item": [1, 2, 3], "title": ["one", None, "three"], "brand": ["x", "y", "z"]})
    inter.to_csv(tmp_path / "inter.csv", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    inter.to_parquet(tmp_path / "inter.parquet")
    items.to_parquet(tmp_path / "items.parquet")
    cfg = PreprocessConfig(min_user_interactions=0)
    for ext in ("csv", "parquet"):
        ds = read_interactions(
            tmp_path / f"inter.{ext}",
            tmp_path / f"items.{ext}",
            user_col="user",
            item_col="item",
            time_col="ts",
            preprocess=cfg,
        )
        assert ds.name == "inter"
        assert ds.item_ids.tolist() == [PAD_TOKEN, "1", "2", "3"]
        assert seqs(ds) == [[1, 2, 3], [1, 2]]
        assert ds.item_table["title"].tolist() == ["", "one", "", "three"]
        assert ds.item_table["brand"].tolist() == ["", "x", "y", "z"]


def test_load_dataset_auto_interactions(tmp_path: Path) -> None:
    d = tmp_path / "mine"
    d.mkdir()
    pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"], "timestamp": [1, 2, 1]}).to_csv(
        d / "interactions.csv", index=False
    )
    pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]}).to_csv(d / "items.csv", index=False)
    cfg = resolve_dataset(str(d))
    assert cfg.format == "interactions" and cfg.name == "mine"
    cfg.use_cache = False
    cfg.preprocess = PreprocessConfig(min_user_interactions=1)
    ds = load_dataset(cfg)
    assert seqs(ds) == [[1, 2], [1]] and ds.titles() == ["", "A", "B"]


def test_builtin_prime_pantry_loads() -> None:
    ds = load_dataset(DataConfig(use_cache=False))
    assert (ds.name, ds.num_users, ds.num_items, ds.num_interactions) == ("prime_pantry", 12871, 8347, 115004)
    assert resolve_dataset("prime_pantry").format == "builtin"
    if SHARED.is_dir():
        for f in ("Prime_Pantry_cleaned_history.csv", "metadata_Prime_Pantry.csv", "Prime_Pantry_fre.csv"):
            assert filecmp.cmp(builtin_dir() / f, SHARED / "prime_pantry" / f, shallow=False)


@needs_shared
def test_prime_pantry_release() -> None:
    pp = SHARED / "prime_pantry"
    ds = read_pad_csv(pp / "Prime_Pantry_cleaned_history.csv", pp / "metadata_Prime_Pantry.csv")
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (12871, 8347, 115004)
    lengths = ds.lengths
    assert (lengths.min(), lengths.max(), round(float(lengths.mean()), 2)) == (5, 23, 8.94)
    assert ds.item_ids[1] == "B00005BPJO"
    assert ds.titles()[1] == "HERSHEY'S Milk Duds Candy, 5 Ounce(Halloween Candy)"
    assert ds.user_ids[0] == "A0526222H977CBZM4DK7"
    assert ds.sequences[0].tolist()[:1] == [ds.item_id_map()["B00099XNXS"]]


@needs_shared
@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("beauty", (52204, 57289, 394908)),
        ("food", (32126, 39264, 275256)),
        ("yelp", (15720, 11383, 192214)),
    ],
)
def test_faerec_release(name: str, counts: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PADREC_DATA_DIR", str(SHARED))
    cfg = resolve_dataset(name)
    cfg.use_cache = False
    ds = load_dataset(cfg)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == counts
    assert ds.source["ids_kept"] is True
    if name == "yelp":  # the default format resolves a shared name too
        assert load_dataset(DataConfig(name="yelp", use_cache=False)).num_interactions == counts[2]
    if name == "beauty":
        assert ds.sequences[0].tolist() == list(range(1, 43))  # file ids kept as internal ids
        assert ds.sequences[1].tolist() == [43, 3, 44, 45, 46, 47]


@needs_shared
def test_games_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PADREC_DATA_DIR", str(SHARED))
    cfg = resolve_dataset("games")
    cfg.use_cache = False
    ds = load_dataset(cfg)
    assert (ds.num_users, ds.num_items) == (50546, 16859)
    assert 430_000 < ds.num_interactions < 450_000
    assert ds.num_interactions == 440264
    assert ds.titles()[1] == "Fire Emblem: The Sacred Stones"
    assert ds.sequences[0].tolist() == list(range(1, 16))  # tokens 0..14 -> 1..15
    assert ds.lengths.max() == 50  # up to 49 history items + target
    valid = pd.read_csv(SHARED / "games" / "Games.valid.inter", sep="\t", dtype=str, keep_default_na=False)
    first = valid.iloc[0]
    assert [int(t) + 1 for t in first.iloc[1].split()] + [int(first.iloc[2]) + 1] == ds.sequences[0].tolist()[:-1]


@needs_shared
def test_auto_detects_shared_folders() -> None:
    assert detect_format(SHARED / "prime_pantry") == "pad_csv"
    assert detect_format(SHARED / "games") == "recbole_atomic"
    assert detect_format(SHARED / "beauty_faerec" / "Beauty.txt") == "faerec_txt"
    assert detect_format(SHARED / "prime_pantry" / "Prime_Pantry_cleaned_history.csv") == "pad_csv"
    cfg = resolve_dataset(str(SHARED / "prime_pantry"))
    cfg.use_cache = False
    assert load_dataset(cfg).num_interactions == 115004
