"""The precomputed encoder: .npy/.safetensors matrices with JSON/CSV id maps, aligned to item ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from text_helpers import titles_dataset

from padrec.text import TextConfig, TextEmbeddings, TextError, build_text_embeddings


def run(tmp_path: Path, **options) -> TextEmbeddings:
    ds = titles_dataset(["a", "b", "c"])  # item ids i1, i2, i3
    cfg = TextConfig(encoder="precomputed", encoder_config=options, cache_dir=str(tmp_path / "cache"), device="cpu")
    return build_text_embeddings(ds, cfg, progress=False)


def matrix() -> np.ndarray:
    # Rows deliberately in a different order than the dataset: row r belongs to ["i3", "x", "i1", "i2"][r].
    return np.array([[3, 3], [9, 9], [1, 1], [2, 2]], dtype=np.float32)


def test_npy_with_json_object(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", matrix())
    (tmp_path / "ids.json").write_text(json.dumps({"i3": 0, "x": 1, "i1": 2, "i2": 3}))
    emb = run(tmp_path, path=str(tmp_path / "m.npy"), ids=str(tmp_path / "ids.json"))
    assert emb.matrix.tolist() == [[0, 0], [1, 1], [2, 2], [3, 3]]
    assert emb.encoder == "precomputed" and emb.missing_ids == []


def test_npy_with_json_list_default_sidecar(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", matrix())
    (tmp_path / "m.json").write_text(json.dumps(["i3", "x", "i1", "i2"]))
    emb = run(tmp_path, path=str(tmp_path / "m.npy"))
    assert emb.matrix[1:].tolist() == [[1, 1], [2, 2], [3, 3]]


def test_safetensors_with_csv_two_columns(tmp_path: Path) -> None:
    save_file({"vectors": matrix()}, str(tmp_path / "m.safetensors"))
    (tmp_path / "ids.csv").write_text("item_id,row\ni3,0\nx,1\ni1,2\ni2,3\n")
    emb = run(tmp_path, path=str(tmp_path / "m.safetensors"), ids=str(tmp_path / "ids.csv"))
    assert emb.matrix[1:].tolist() == [[1, 1], [2, 2], [3, 3]]


def test_safetensors_with_csv_one_column_and_tensor_choice(tmp_path: Path) -> None:
    save_file({"a": matrix(), "b": matrix() * 10}, str(tmp_path / "m.safetensors"))
    (tmp_path / "ids.csv").write_text("item_id\ni3\nx\ni1\ni2\n")
    with pytest.raises(TextError, match="say which one with tensor"):
        run(tmp_path, path=str(tmp_path / "m.safetensors"), ids=str(tmp_path / "ids.csv"))
    emb = run(tmp_path, path=str(tmp_path / "m.safetensors"), ids=str(tmp_path / "ids.csv"), tensor="b")
    assert emb.matrix[1].tolist() == [10, 10]


def test_round_trip_with_padrec_output(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", matrix())
    (tmp_path / "m.json").write_text(json.dumps(["i3", "x", "i1", "i2"]))
    first = run(tmp_path, path=str(tmp_path / "m.npy"))
    first.save(tmp_path / "out" / "emb")
    again = run(tmp_path, path=str(tmp_path / "out" / "emb.safetensors"))  # sidecar emb.json has item_ids
    assert torch.equal(first.matrix, again.matrix)


def test_missing_items_error_or_zero(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", matrix())
    (tmp_path / "ids.json").write_text(json.dumps({"i1": 2, "i3": 0}))
    with pytest.raises(TextError, match=r"1 of 3 dataset items have no row, e\.g\. \['i2'\]"):
        run(tmp_path, path=str(tmp_path / "m.npy"), ids=str(tmp_path / "ids.json"))
    emb = run(tmp_path, path=str(tmp_path / "m.npy"), ids=str(tmp_path / "ids.json"), missing="zero")
    assert emb.missing_ids == [2] and emb.matrix[2].tolist() == [0, 0]


def test_no_overlap_is_an_error(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", matrix())
    (tmp_path / "ids.json").write_text(json.dumps({"zz": 0}))
    with pytest.raises(TextError, match="none of the dataset's 3 item ids"):
        run(tmp_path, path=str(tmp_path / "m.npy"), ids=str(tmp_path / "ids.json"), missing="zero")


def test_dimension_mismatch(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", matrix())
    (tmp_path / "m.json").write_text(json.dumps(["i3", "x", "i1", "i2"]))
    with pytest.raises(TextError, match="width 2 does not match the configured dim 384"):
        run(tmp_path, path=str(tmp_path / "m.npy"), dim=384)


def test_pickled_object_arrays_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp_path / "m.json").write_text(json.dumps(["i1", "i2"]))
    with pytest.raises(TextError, match="without pickle"):
        run(tmp_path, path=str(tmp_path / "m.npy"))


def test_nan_rows_and_out_of_range_rows(tmp_path: Path) -> None:
    m = matrix()
    m[2, 0] = np.nan
    np.save(tmp_path / "m.npy", m)
    (tmp_path / "m.json").write_text(json.dumps(["i3", "x", "i1", "i2"]))
    with pytest.raises(TextError, match=r"NaN/inf, for items \['i1'\]"):
        run(tmp_path, path=str(tmp_path / "m.npy"))
    (tmp_path / "m.json").write_text(json.dumps({"i1": 7, "i2": 1, "i3": 0}))
    with pytest.raises(TextError, match="outside the matrix's 4 rows"):
        run(tmp_path, path=str(tmp_path / "m.npy"))


@pytest.mark.parametrize(
    "content, msg",
    [
        ("{not json", "not valid JSON"),
        ('{"i1": "two"}', "is not an integer"),
        ("[]", "id map is empty"),
        ("3", "expected a JSON object"),
    ],
)
def test_bad_id_maps(tmp_path: Path, content: str, msg: str) -> None:
    np.save(tmp_path / "m.npy", matrix())
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(TextError, match=msg):
        run(tmp_path, path=str(tmp_path / "m.npy"))


def test_missing_files_and_formats(tmp_path: Path) -> None:
    with pytest.raises(TextError, match="set 'path'"):
        run(tmp_path)
    with pytest.raises(TextError, match="precomputed matrix not found"):
        run(tmp_path, path=str(tmp_path / "nope.npy"))
    np.save(tmp_path / "m.npy", matrix())
    with pytest.raises(TextError, match="id map not found"):
        run(tmp_path, path=str(tmp_path / "m.npy"))
    (tmp_path / "m.txt").write_text("1 2")
    (tmp_path / "m.json").write_text("[]")
    with pytest.raises(TextError, match="unsupported matrix format"):
        run(tmp_path, path=str(tmp_path / "m.txt"), ids=str(tmp_path / "m.json"))
    np.save(tmp_path / "v.npy", np.ones(3, dtype=np.float32))
    (tmp_path / "v.json").write_text('["i1"]')
    with pytest.raises(TextError, match="expected a 2-D matrix"):
        run(tmp_path, path=str(tmp_path / "v.npy"))


def test_normalize(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", matrix())
    (tmp_path / "m.json").write_text(json.dumps(["i3", "x", "i1", "i2"]))
    emb = run(tmp_path, path=str(tmp_path / "m.npy"), normalize=True)
    assert torch.allclose(emb.matrix[1:].norm(dim=1), torch.ones(3))
