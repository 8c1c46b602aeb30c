"""Malformed data files and caches: a DataError/TextError naming the file, the line or field and
what was expected; never a traceback, a silently wrong result, a memory blow-up, or a
half-written output file or cache entry."""

from __future__ import annotations

import logging
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from text_helpers import HashEncoder, titles_dataset

from padrec.data import (
    DataConfig,
    DataError,
    PreprocessConfig,
    compute_item_stats,
    load_dataset,
    read_faerec_txt,
    read_interactions,
    read_pad_csv,
    read_recbole_atomic,
)
from padrec.data.dataset import SequenceDataset
from padrec.data.stats import frequency_buckets
from padrec.text import TextConfig, TextError, build_text_embeddings, make_encoder, read_cache
from padrec.text.cache import cache_path, parts_dir, text_hash, write_part


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def no_leftovers(root: Path) -> None:
    """Nothing half-written: no temporary file or directory anywhere under ``root``."""
    if root.exists():
        assert not [p for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def load_cached(tmp_path: Path, **kw: object) -> SequenceDataset:
    return load_dataset(DataConfig(cache_dir=str(tmp_path / "cache"), **kw))


def assert_no_dataset_entry(tmp_path: Path) -> None:
    entries = tmp_path / "cache" / "datasets"
    assert not entries.exists() or not any(entries.iterdir())


# --------------------------------------------------------------------------- FAERec text files


@pytest.mark.parametrize("big", [50_000_000, 3_000_000_000])
def test_faerec_huge_item_id_is_mapped_without_allocation(tmp_path: Path, big: int) -> None:
    p = write(tmp_path / "big.txt", f"1 1 2\n2 2 {big} 1\n")
    tracemalloc.start()
    try:
        ds = read_faerec_txt(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"reading 4 ids allocated {peak:,} bytes"
    assert ds.item_ids.tolist() == ["[PAD]", "1", "2", str(big)]
    assert [s.tolist() for s in ds.sequences] == [[1, 2], [2, 3, 1]]
    assert ds.source["ids_kept"] is False


def test_faerec_ids_beyond_64_bits_are_mapped_in_numeric_order(tmp_path: Path) -> None:
    huge = "123456789012345678901234567890"
    p = write(tmp_path / "h.txt", f"u1 5 {huge} 7\nu2 0007 99999999999999999999 5\n")
    ds = read_faerec_txt(p)
    assert ds.item_ids.tolist() == ["[PAD]", "5", "7", "99999999999999999999", huge]
    assert [s.tolist() for s in ds.sequences] == [[1, 4, 2], [2, 3, 1]]


def test_faerec_dense_ids_keep_their_numbers(tmp_path: Path) -> None:
    p = write(tmp_path / "d.txt", "1 3 1 2\n2 2 3\n")
    ds = read_faerec_txt(p)
    assert ds.source["ids_kept"] is True and ds.item_ids.tolist() == ["[PAD]", "1", "2", "3"]
    assert [s.tolist() for s in ds.sequences] == [[3, 1, 2], [2, 3]]


@pytest.mark.parametrize(
    "line2, field, token",
    [("2 3 -5", 3, "-5"), ("2 1.5", 2, "1.5"), ("2 4 abc 1", 3, "abc"), ("2 0", 2, "0"), ("2 ²", 2, "²")],
)
def test_faerec_bad_item_tokens(tmp_path: Path, line2: str, field: int, token: str) -> None:
    p = write(tmp_path / "bad.txt", f"1 1 2\n{line2}\n")
    with pytest.raises(DataError) as err:
        load_cached(tmp_path, name="bad", format="faerec_txt", path=str(p))
    msg = str(err.value)
    assert msg.startswith(f"{p}: line 2, field {field} (item id): expected an integer >= 1")
    assert repr(token) in msg
    assert_no_dataset_entry(tmp_path)
    no_leftovers(tmp_path / "cache")


def test_faerec_huge_id_next_to_a_bad_token_reports_the_token(tmp_path: Path) -> None:
    p = write(tmp_path / "mix.txt", f"1 1 {'9' * 40}\n2 2 x\n")
    with pytest.raises(DataError, match=r"mix\.txt: line 2, field 3 \(item id\): expected an integer >= 1.*'x'"):
        read_faerec_txt(p)


def test_faerec_empty_line_in_the_middle(tmp_path: Path) -> None:
    p = write(tmp_path / "e.txt", "1 1 2\n\n3 2 1\n")
    with pytest.raises(DataError, match=r"e\.txt: line 2: expected 'user_id item_id item_id \.\.\.'.*empty line"):
        read_faerec_txt(p)


# --------------------------------------------------------------------------- PAD CSV history cells


def pad_files(tmp: Path, history_cell: str, meta: str = "asin,title\nB1,One\nB2,Two\n") -> tuple[Path, Path]:
    h = write(tmp / "h.csv", f",user,history\n0,u,\"['B1', 'B2']\"\n1,v,\"{history_cell}\"\n")
    return h, write(tmp / "m.csv", meta)


@pytest.mark.parametrize("depth", [2, 1_000, 100_000])
def test_pad_history_nested_deep(tmp_path: Path, depth: int) -> None:
    h, m = pad_files(tmp_path, "[" * depth + "'B1'" + "]" * depth)
    with pytest.raises(DataError) as err:
        read_pad_csv(h, m)
    msg = str(err.value)
    assert msg.startswith(f"{h}: line 3, field 'history': brackets nested {depth} deep")
    assert "expected a flat Python list of item ids" in msg


def test_pad_history_brackets_inside_ids_are_text(tmp_path: Path) -> None:
    h, m = pad_files(tmp_path, "['B[1', 'B(2)']", meta="asin,title\nB1,One\nB2,Two\nB[1,x\nB(2),y\n")
    ds = read_pad_csv(h, m)
    assert [ds.item_ids[i] for i in ds.sequences[1]] == ["B[1", "B(2)"]


# --------------------------------------------------------------------------- timestamps


def inter(tmp: Path, stamps: list[str], name: str = "i.csv") -> Path:
    rows = [f"u,i{k},{t}" for k, t in enumerate(stamps)]
    return write(tmp / name, "user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize("bad", ["inf", "-inf", "1e400", "Infinity"])
def test_infinite_timestamp(tmp_path: Path, bad: str) -> None:
    p = inter(tmp_path, ["1", "2", bad, "4", "5"])
    with pytest.raises(DataError) as err:
        load_cached(tmp_path, name="i", format="interactions", path=str(p))
    assert str(err.value).startswith(f"{p}: line 4, field 'timestamp': expected a finite number, got '{bad}'")
    assert_no_dataset_entry(tmp_path)


def test_nan_and_absurd_timestamps(tmp_path: Path) -> None:
    p = inter(tmp_path, ["1", "nan", "3", "4", "5"])
    with pytest.raises(DataError, match=r"i\.csv: line 3, field 'timestamp': expected a number or an ISO-8601 date"):
        read_interactions(p)
    p = inter(tmp_path, ["1", "2", "3", "1e19", "5"], name="j.csv")
    with pytest.raises(DataError, match=r"j\.csv: line 5, field 'timestamp': timestamp '1e19' is no epoch time"):
        read_interactions(p)


def test_parquet_timestamps_and_ratings_must_be_finite(tmp_path: Path) -> None:
    p = tmp_path / "i.parquet"
    df = pd.DataFrame({"user_id": ["u"] * 5, "item_id": list("abcde"), "timestamp": [1.0, 2, np.inf, 4, 5]})
    df.to_parquet(p)
    with pytest.raises(DataError, match=r"i\.parquet: row 3, field 'timestamp': expected a finite number"):
        read_interactions(p)
    df["timestamp"] = [1.0, 2, 3, 4, 5]
    df["rating"] = [5.0, np.inf, 4, 4, 4]
    df.to_parquet(p)
    with pytest.raises(DataError, match=r"i\.parquet: row 2, field 'rating': expected a finite number"):
        read_interactions(p, rating_col="rating", preprocess=PreprocessConfig(rating_threshold=4))


def test_recbole_interaction_timestamp_infinite(tmp_path: Path) -> None:
    p = write(tmp_path / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t1\t5\n1\t2\tinf\n")
    with pytest.raises(DataError, match=r"x\.inter: line 3, field 'timestamp': expected a finite number"):
        read_recbole_atomic(None, p)


def test_one_iso_date_among_epoch_seconds(tmp_path: Path) -> None:
    p = inter(tmp_path, ["1514764800", "1514851200", "1514937600", "2020-01-05", "1515024000"])
    with pytest.raises(DataError) as err:
        read_interactions(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: line 5, field 'timestamp': mixed numbers and dates in column 'timestamp'")
    assert "found the ISO-8601 date '2020-01-05' among 4 numbers (the first at line 2: '1514764800')" in msg
    assert "expected one kind per column: all numbers (epoch time in any unit) or all ISO-8601 dates" in msg


def test_one_number_among_iso_dates(tmp_path: Path) -> None:
    p = inter(tmp_path, ["2020-01-01", "2020-01-02", "1577923200", "2020-01-04", "2020-01-05"])
    with pytest.raises(DataError, match=r"line 4, field 'timestamp': mixed numbers and dates.*the number '1577923200'"):
        read_interactions(p)


def test_all_iso_dates_with_different_zones_are_ordered_in_utc(tmp_path: Path) -> None:
    stamps = [
        "2020-01-05T10:00:00+02:00",
        "2020-01-05T09:30:00Z",
        "2020-01-05T08:15:00Z",
        "2020-01-05T07:00:00-05:00",
        "2020-01-05T12:00:00+00:00",
    ]
    ds = read_interactions(inter(tmp_path, stamps), preprocess=PreprocessConfig(min_user_interactions=0))
    # UTC: i0 08:00, i1 09:30, i2 08:15, i3 12:00, i4 12:00 (tie keeps file order)
    assert [ds.item_ids[i] for i in ds.sequences[0]] == ["i0", "i2", "i1", "i3", "i4"]


def test_unreadable_value_in_a_date_column_is_shown(tmp_path: Path) -> None:
    p = inter(tmp_path, ["2020-01-05", "2020-W02-1", "2020-01-07"])  # was reported as "got None"
    with pytest.raises(DataError) as err:
        read_interactions(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: line 3, field 'timestamp': expected a number or an ISO-8601 date (")
    assert msg.endswith("week and ordinal dates are not read), got '2020-W02-1'")


def test_dates_with_and_without_zone(tmp_path: Path) -> None:
    p = inter(tmp_path, ["2020-01-05T10:00:00Z", "2020-01-06", "2020-01-07T10:00:00Z"])
    with pytest.raises(
        DataError, match=r"line 3, field 'timestamp': the date '2020-01-06' has no time zone but line 2"
    ):
        read_interactions(p)


def test_date_outside_64_bit_nanoseconds(tmp_path: Path) -> None:
    p = inter(tmp_path, ["2020-01-05", "9999-12-31", "2020-01-07"])
    with pytest.raises(DataError, match=r"line 3, field 'timestamp': the date '9999-12-31 00:00:00' is outside"):
        read_interactions(p)


# --------------------------------------------------------------------------- HTML entities


def test_titles_unescaped_ids_byte_identical(tmp_path: Path) -> None:
    meta = 'asin,title,brand\nB&amp;1,"Shells &amp; Cheese, Annie&#39;s",A&amp;B\nB2,&quot;R&D&quot; &notes,x\n'
    h = write(tmp_path / "h.csv", ",user,history\n0,u,\"['B&amp;1', 'B2']\"\n")
    ds = read_pad_csv(h, write(tmp_path / "m.csv", meta))
    assert ds.item_ids.tolist() == ["[PAD]", "B&amp;1", "B2"]  # ids key the data: untouched
    assert ds.titles() == ["", "Shells & Cheese, Annie's", '"R&D" &notes']  # displayed decoded
    assert ds.item_table["title"].tolist() == ["", "Shells &amp; Cheese, Annie&#39;s", "&quot;R&D&quot; &notes"]
    assert ds.item_table["brand"].tolist() == ["", "A&amp;B", "x"]  # the table keeps the published text

    i = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a&amp;1,1\n")
    items = write(tmp_path / "items.csv", "item_id,title\na&amp;1,Salt &amp; Pepper\n")
    ds = read_interactions(i, items, preprocess=PreprocessConfig(min_user_interactions=0))
    assert ds.item_ids[1] == "a&amp;1" and ds.titles()[1] == "Salt & Pepper"

    item = write(tmp_path / "g.item", "item_id:token\ttitle:token_seq\nt&amp;1\tTom &amp; Jerry\n")
    seq = write(tmp_path / "g.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n1\tt&amp;1\tt&amp;1\n")
    ds = read_recbole_atomic(item, seq)
    assert ds.item_ids[1] == "t&amp;1" and ds.titles()[1] == "Tom & Jerry"


def test_builtin_prime_pantry_titles_unescaped(tmp_path: Path) -> None:
    """Displayed titles are decoded; the encoders read the published text (as PAD's release)."""
    ds = load_cached(tmp_path)
    titles = pd.Series(ds.titles())
    assert not titles.str.contains("&amp;|&#39;|&quot;").any()
    assert "Annie's Macaroni and Cheese, Shells & White Cheddar, 6 oz. Box" in set(titles)
    assert ds.item_table["title"].str.contains("&amp;").any()
    assert ds.num_items == 8347 and ds.num_interactions == 115004


# --------------------------------------------------------------------------- buckets, head fraction


def toy(n_items: int = 5) -> SequenceDataset:
    seqs = [np.array([1, 2, 3, 4, 5, 1, 2], dtype=np.int64)]
    ids = np.array(["[PAD]"] + [f"i{k}" for k in range(n_items)])
    return SequenceDataset("toy", seqs, np.array(["u"]), ids, pd.DataFrame(index=pd.RangeIndex(n_items + 1)))


@pytest.mark.parametrize(
    "kw, text",
    [
        ({"num_buckets": 0}, r"num_buckets \(stats\.num_buckets, --buckets\) = 0: expected a whole number >= 1"),
        ({"num_buckets": -3}, r"= -3: expected a whole number >= 1"),
        ({"num_buckets": 100_000}, r"dataset 'toy': num_buckets .* = 100000 is more than the 5 items with training"),
        ({"num_buckets": 6}, r"expected a whole number from 1 to 5"),
        ({"head_fraction": 0.0}, r"head_fraction \(stats\.head_fraction\) = 0\.0: expected a number strictly between"),
        ({"head_fraction": 1.0}, r"= 1\.0: expected a number strictly between 0 and 1"),
        ({"head_fraction": 1.5}, r"= 1\.5: expected"),
    ],
)
def test_bad_bucket_count_or_head_fraction(kw: dict, text: str) -> None:
    with pytest.raises(DataError, match=text):
        compute_item_stats(toy(), **kw)


def test_bucket_count_limits() -> None:
    assert compute_item_stats(toy(), num_buckets=5).num_buckets == 5  # every item alone is fine
    with pytest.raises(DataError, match="expected a whole number >= 1"):
        frequency_buckets(np.array([0, 3, 1]), 0)


# --------------------------------------------------------------------------- caches


def test_user_order_sorted_with_ids_beyond_64_bits(tmp_path: Path) -> None:
    big = "9" * 30
    p = write(tmp_path / "i.csv", f"user_id,item_id,timestamp\n{big},a,1\n7,b,2\n")
    ds = read_interactions(p, preprocess=PreprocessConfig(min_user_interactions=0, user_order="sorted"))
    assert ds.user_ids.tolist() == ["7", big]


def test_dataset_cache_entry_of_older_reading_rules_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "metadata_x.csv", "asin,title\nB1,Tea &amp; Milk\nB2,Two\n")
    write(tmp_path / "x_cleaned_history.csv", ",user,history\n0,u,\"['B1', 'B2']\"\n")
    cfg = {"name": "x", "format": "pad_csv", "path": str(tmp_path)}
    # What an older padrec cached, under older reading rules (here: titles upper-cased).
    monkeypatch.setattr("padrec.data.cache.READING_RULES", 1)
    monkeypatch.setattr("padrec.data.pad_csv.item_text_column", lambda values, column: values.str.upper().to_numpy())
    assert load_cached(tmp_path, **cfg).item_table["title"][1] == "TEA &AMP; MILK"
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="padrec.data.cache"):
        again = load_cached(tmp_path, **cfg)
    assert "reading rules changed since the cache was written" in caplog.text
    assert again.item_table["title"][1] == "Tea &amp; Milk"
    assert load_cached(tmp_path, **cfg).titles()[1] == "Tea & Milk"  # the rebuilt entry, shown decoded
    no_leftovers(tmp_path / "cache")


def test_damaged_text_cache_part_is_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    HashEncoder.reset()
    cfg = TextConfig(encoder="test-hash", cache_dir=str(tmp_path), device="cpu")
    ds = titles_dataset(["Milk", "Tea", "Coffee"])
    good = build_text_embeddings(ds, cfg, progress=False)
    path = Path(good.cache_path)
    entry = read_cache(path, good.identity, "title")
    path.unlink()
    part = write_part(path, entry.hashes[:2], entry.matrix[:2], good.identity, "title", False)
    broken = parts_dir(path) / "part-00000000000000000000-000000.safetensors"
    broken.write_bytes(part.read_bytes()[:50])  # a part cut short (not possible through padrec)
    HashEncoder.reset()
    with caplog.at_level(logging.WARNING, logger="padrec.text"):
        again = build_text_embeddings(ds, cfg, progress=False)
    assert re.search(r"text cache part .*part-0+-0+\.safetensors: unreadable or corrupt file.*ignoring it", caplog.text)
    assert again.encoded == 1 and again.cache_hits == 2 and torch.equal(again.matrix, good.matrix)
    assert not parts_dir(path).exists()
    no_leftovers(tmp_path)


def test_encoder_failing_half_way_leaves_only_complete_cache_files(tmp_path: Path) -> None:
    HashEncoder.reset()
    cfg = TextConfig(encoder="test-hash", encoder_config={"nan_text": "Tea"}, cache_dir=str(tmp_path), batch_size=1)
    with pytest.raises(TextError, match="NaN/inf"):  # longest first: Coffee!, Milk, then Tea fails
        build_text_embeddings(titles_dataset(["Coffee!", "Milk", "Tea"]), cfg, progress=False)
    no_leftovers(tmp_path)
    ident = make_encoder(cfg).identity()
    saved = read_cache(cache_path(tmp_path, ident, "title"), ident, "title")
    assert saved is not None and saved.hashes == [text_hash("Coffee!"), text_hash("Milk")]  # complete parts
