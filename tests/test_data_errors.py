"""Every kind of bad input raises DataError naming the file, the line/row and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from padrec.data import (
    DataConfig,
    DataError,
    PreprocessConfig,
    load_dataset,
    read_faerec_txt,
    read_interactions,
    read_pad_csv,
    read_recbole_atomic,
    resolve_dataset,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def pad_files(tmp: Path, history: str, meta: str = "asin,title\nB1,One\nB2,Two\n") -> tuple[Path, Path]:
    return write(tmp / "h.csv", history), write(tmp / "m.csv", meta)


# --------------------------------------------------------------------------- missing columns


def test_missing_columns_interactions(tmp_path: Path) -> None:
    p = write(tmp_path / "inter.csv", "user_id,item\nu,a\n")
    with pytest.raises(DataError, match=r"inter\.csv.*missing column\(s\) \['item_id', 'timestamp'\]"):
        read_interactions(p)


def test_missing_columns_pad(tmp_path: Path) -> None:
    h, m = pad_files(tmp_path, ",user,items\n0,u,\"['B1']\"\n")
    with pytest.raises(DataError, match=r"h\.csv.*missing column\(s\) \['history'\]"):
        read_pad_csv(h, m)
    h, m = pad_files(tmp_path, ",user,history\n0,u,\"['B1']\"\n", meta="id,title\nB1,x\n")
    with pytest.raises(DataError, match=r"m\.csv.*missing column\(s\) \['asin'\]"):
        read_pad_csv(h, m)


def test_missing_columns_item_table_and_rating(tmp_path: Path) -> None:
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\n")
    items = write(tmp_path / "items.csv", "id,title\na,A\n")
    with pytest.raises(DataError, match=r"items\.csv: item table is missing column\(s\) \['item_id'\]"):
        read_interactions(inter, items)
    with pytest.raises(DataError, match="rating_threshold=4 needs a rating column"):
        read_interactions(inter, preprocess=PreprocessConfig(rating_threshold=4))


def test_missing_columns_recbole(tmp_path: Path) -> None:
    inter = write(tmp_path / "x.inter", "user_id:token\titem_list:token_seq\n1\t2 3\n")
    with pytest.raises(DataError, match=r"x\.inter.*missing column\(s\) \['item_id'\]"):
        read_recbole_atomic(None, inter)


# --------------------------------------------------------------------------- unparseable values


def test_unparseable_history(tmp_path: Path) -> None:
    h, m = pad_files(tmp_path, ",user,history\n0,u,\"['B1', 'B2']\"\n1,v,\"['B1', \"\n")
    with pytest.raises(DataError, match=r"h\.csv: line 3, field 'history': expected a Python list"):
        read_pad_csv(h, m)
    h, m = pad_files(tmp_path, ",user,history\n0,u,\"__import__('os')\"\n")
    with pytest.raises(DataError, match=r"line 2, field 'history'"):
        read_pad_csv(h, m)
    h, m = pad_files(tmp_path, ",user,history\n0,u,\"{'B1': 1}\"\n")
    with pytest.raises(DataError, match=r"line 2, field 'history': expected a list of item ids"):
        read_pad_csv(h, m)
    h, m = pad_files(tmp_path, ",user,history\n0,u,[]\n")
    with pytest.raises(DataError, match=r"line 2, field 'history': the history is empty"):
        read_pad_csv(h, m)


def test_unparseable_timestamp_and_rating(tmp_path: Path) -> None:
    p = write(tmp_path / "i.csv", "user_id,item_id,timestamp,rating\nu,a,1,5\nu,b,soon,4\n")
    with pytest.raises(DataError, match=r"i\.csv: line 3, field 'timestamp': expected a number.*'soon'"):
        read_interactions(p, rating_col="rating")
    p = write(tmp_path / "j.csv", "user_id,item_id,timestamp,rating\nu,a,1,5\nu,b,2,five\n")
    with pytest.raises(DataError, match=r"j\.csv: line 3, field 'rating': expected a number"):
        read_interactions(p, rating_col="rating", preprocess=PreprocessConfig(rating_threshold=4))


def test_faerec_bad_token(tmp_path: Path) -> None:
    p = write(tmp_path / "b.txt", "1 1 2\n2 3 x\n")
    with pytest.raises(DataError, match=r"b\.txt: line 2, field 3 \(item id\): expected an integer >= 1.*'x'"):
        read_faerec_txt(p)
    p = write(tmp_path / "z.txt", "1 1 0\n")
    with pytest.raises(DataError, match=r"line 1, field 3 \(item id\).*'0'"):
        read_faerec_txt(p)
    p = write(tmp_path / "u.txt", "1 1 2\n2\n")
    with pytest.raises(DataError, match=r"u\.txt: line 2: expected 'user_id item_id"):
        read_faerec_txt(p)


def test_missing_id_value(tmp_path: Path) -> None:
    p = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\n,b,2\n")
    with pytest.raises(DataError, match=r"i\.csv: line 3, field 'user_id': expected an id, got an empty value"):
        read_interactions(p)


# --------------------------------------------------------------------------- unknown item ids


def test_unknown_item_ids(tmp_path: Path) -> None:
    h, m = pad_files(tmp_path, ",user,history\n0,u,\"['B1']\"\n1,v,\"['B2', 'B9']\"\n")
    with pytest.raises(DataError, match=r"h\.csv: line 3, field 'history': item id 'B9' is not in the metadata"):
        read_pad_csv(h, m)
    item = write(tmp_path / "G.item", "item_id:token\ttitle:token_seq\n0\tA\n1\tB\n")
    inter = write(
        tmp_path / "G.test.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n1\t0\t1\n2\t1 5\t0\n3\t0\t7\n"
    )
    with pytest.raises(DataError, match=r"G\.test\.inter: line 3, field 'item_id_list': item id '5'"):
        read_recbole_atomic(item, inter)
    inter2 = write(tmp_path / "H.test.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n3\t0\t7\n")
    with pytest.raises(DataError, match=r"line 2, field 'item_id': item id '7'"):
        read_recbole_atomic(item, inter2)
    i = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\nu,q,2\n")
    t = write(tmp_path / "t.csv", "item_id,title\na,A\n")
    with pytest.raises(
        DataError,
        match=r"i\.csv: 1 interaction\(s\) name item ids missing from the item table "
        r".*t\.csv \(first at line 3, field 'item_id'; e\.g\. \['q'\]\)",
    ):
        read_interactions(i, t, preprocess=PreprocessConfig(min_user_interactions=0))


# --------------------------------------------------------------------------- duplicate ids


def test_duplicate_item_ids(tmp_path: Path) -> None:
    h, m = pad_files(tmp_path, ",user,history\n0,u,\"['B1']\"\n", meta="asin,title\nB1,x\nB2,y\nB1,z\n")
    with pytest.raises(DataError, match=r"m\.csv: field 'asin': duplicate item id 'B1' at line 2, line 4"):
        read_pad_csv(h, m)
    i = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\n")
    t = write(tmp_path / "t.csv", "item_id,title\na,A\nb,B\na,C\n")
    with pytest.raises(DataError, match=r"t\.csv: field 'item_id': duplicate item id 'a' at line 2, line 4"):
        read_interactions(i, t)
    item = write(tmp_path / "G.item", "item_id:token\ttitle:token_seq\n0\tA\n0\tB\n")
    inter = write(tmp_path / "G.test.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n1\t0\t0\n")
    with pytest.raises(DataError, match=r"G\.item: field 'item_id': duplicate item id '0'"):
        read_recbole_atomic(item, inter)


def test_duplicate_user_lines(tmp_path: Path) -> None:
    p = write(tmp_path / "d.txt", "1 1 2\n1 3\n")
    with pytest.raises(DataError, match=r"d\.txt: line 2, field 1 \(user id\): duplicate user id '1'"):
        read_faerec_txt(p)


# --------------------------------------------------------------------------- empty after filtering


@pytest.mark.parametrize(
    ("cfg", "step"),
    [
        (PreprocessConfig(rating_threshold=6), r"the rating filter \(rating >= 6\)"),
        (PreprocessConfig(min_user_interactions=10), r"the user minimum \(min_user_interactions=10\)"),
        (PreprocessConfig(item_core=5, min_user_interactions=1), r"the item k-core \(item_core=5\)"),
    ],
)
def test_empty_after_filtering(tmp_path: Path, cfg: PreprocessConfig, step: str) -> None:
    p = write(tmp_path / "i.csv", "user_id,item_id,timestamp,rating\nu,a,1,5\nu,b,2,4\nv,a,1,3\n")
    with pytest.raises(DataError, match=rf"i\.csv: no interactions left after {step}"):
        read_interactions(p, rating_col="rating", preprocess=cfg)


def test_empty_after_dropping_unknown(tmp_path: Path) -> None:
    i = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,q,1\n")
    t = write(tmp_path / "t.csv", "item_id,title\na,A\n")
    with pytest.raises(DataError, match="no interactions left after dropping items missing from the item table"):
        read_interactions(i, t, preprocess=PreprocessConfig(unknown_items="drop"))


# --------------------------------------------------------------------------- unreadable / missing files


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.txt: FAERec sequence file not found"):
        read_faerec_txt(tmp_path / "nope.txt")
    with pytest.raises(DataError, match=r"nope\.csv: interactions table not found"):
        read_interactions(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"m\.csv: PAD metadata CSV not found"):
        read_pad_csv(write(tmp_path / "h.csv", ",user,history\n"), tmp_path / "m.csv")
    with pytest.raises(DataError, match="neither a known dataset .* nor an existing file"):
        resolve_dataset(str(tmp_path / "missing_dir"))
    with pytest.raises(DataError, match=r"needs a path \(known names"):
        load_dataset(DataConfig(name="unknown_name", format="auto"))
    with pytest.raises(DataError, match="is not a regular file"):
        read_faerec_txt(tmp_path)


def test_unreadable_files(tmp_path: Path) -> None:
    p = tmp_path / "bin.csv"
    p.write_bytes(b"user_id,item_id\n\xff\xfe\x00\x81,a\n")
    with pytest.raises(DataError, match=r"bin\.csv: .*not UTF-8"):
        read_interactions(p)
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv: interactions table is empty"):
        read_interactions(empty)
    with pytest.raises(DataError, match=r"e\.txt: FAERec sequence file is empty"):
        read_faerec_txt(write(tmp_path / "e.txt", "\n\n"))
    bad_parquet = write(tmp_path / "x.parquet", "not parquet")
    with pytest.raises(DataError, match=r"x\.parquet: cannot read interactions table as parquet"):
        read_interactions(bad_parquet)


def test_shared_folder_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PADREC_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="PADREC_DATA_DIR=.*nowhere is not a directory"):
        load_dataset(DataConfig(name="beauty", format="auto", use_cache=False))
    monkeypatch.setenv("PADREC_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="shared dataset 'beauty' not found"):
        load_dataset(DataConfig(name="beauty", format="auto", use_cache=False))


# --------------------------------------------------------------------------- wrong delimiter / format


def test_wrong_delimiter(tmp_path: Path) -> None:
    p = write(tmp_path / "semi.csv", "user_id;item_id;timestamp\nu;a;1\n")
    with pytest.raises(DataError, match=r"semi\.csv: .*missing column.*';'.*wrong delimiter"):
        read_interactions(p)
    t = write(tmp_path / "tabs.csv", "user_id\titem_id\ttimestamp\nu\ta\t1\n")
    with pytest.raises(DataError, match="a tab.*wrong delimiter"):
        read_interactions(t)
    c = write(tmp_path / "Games.test.inter", "user_id:token,item_id_list:token_seq,item_id:token\n1,2 3,4\n")
    with pytest.raises(DataError, match=r"Games\.test\.inter: .*single column.*tab-separated.*wrong delimiter"):
        read_recbole_atomic(None, c)
    f = write(tmp_path / "commas.txt", "1,2,3\n")
    with pytest.raises(
        DataError,
        match=r"commas\.txt: line 1: expected 'user_id item_id item_id \.\.\.' separated "
        r"by spaces, got only '1,2,3'",
    ):
        read_faerec_txt(f)


def test_wrong_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.json: unsupported file extension"):
        read_interactions(write(tmp_path / "data.json", "{}"))
    with pytest.raises(DataError, match=r"cannot tell the dataset format from the extension '\.json'"):
        resolve_dataset(str(tmp_path / "data.json"))
    h = write(tmp_path / "x_cleaned_history.csv", ",user,history\n0,u,\"['B1']\"\n")
    with pytest.raises(DataError, match="read as published; preprocess options"):
        load_dataset(DataConfig(format="pad_csv", path=str(h), preprocess=PreprocessConfig(), use_cache=False))
    ragged = write(tmp_path / "ragged.csv", 'user_id,item_id,timestamp\nu,a,1\n"u,b\n')
    with pytest.raises(DataError, match=r"ragged\.csv: cannot parse interactions table as CSV"):
        read_interactions(ragged)
