"""build_text_embeddings with a fast fake encoder: shapes, padding, dedupe, missing texts, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from text_helpers import HashEncoder, hash_vector, make_dataset, titles_dataset

from padrec.config import ConfigError, from_dict
from padrec.devices import resolve_device
from padrec.text import (
    ENCODERS,
    MissingDependencyError,
    TextConfig,
    TextEmbeddings,
    TextError,
    build_text_embeddings,
    nearest_neighbours,
    pick_items,
)
from padrec.text.encoders import l2_normalize, require


@pytest.fixture(autouse=True)
def _reset() -> None:
    HashEncoder.reset()


def cfg(tmp_path: Path, **kw) -> TextConfig:
    base = {"encoder": "test-hash", "cache_dir": str(tmp_path / "cache"), "device": "cpu", "batch_size": 2}
    base.update(kw)
    return from_dict(TextConfig, base, where="text")


def test_shape_padding_order_and_dedupe(tmp_path: Path) -> None:
    titles = ["Milk", "Tea", "Milk", "Dark roast coffee beans"]
    emb = build_text_embeddings(titles_dataset(titles), cfg(tmp_path), progress=False)
    m = emb.matrix
    assert m.dtype == torch.float32 and m.shape == (5, 6)
    assert torch.count_nonzero(m[0]) == 0
    for i, t in enumerate(titles, start=1):
        np.testing.assert_array_equal(m[i].numpy(), hash_vector(t, 6))
    assert emb.encoded == 3 and emb.cache_hits == 0  # "Milk" encoded once
    assert sorted(HashEncoder.encoded_texts) == sorted({"Milk", "Tea", "Dark roast coffee beans"})
    assert emb.item_ids[0] == "[PAD]" and emb.dim == 6 and emb.num_items == 4
    assert emb.items_per_second is not None and emb.items_per_second > 0


def test_batches_are_longest_first_and_order_restored(tmp_path: Path) -> None:
    titles = ["a", "bbbb", "cc", "ddddddd", "eee"]
    emb = build_text_embeddings(titles_dataset(titles), cfg(tmp_path, use_cache=False), progress=False)
    assert HashEncoder.encoded_texts == ["ddddddd", "bbbb", "eee", "cc", "a"]
    for i, t in enumerate(titles, start=1):
        np.testing.assert_array_equal(emb.matrix[i].numpy(), hash_vector(t, 6))


def test_deterministic(tmp_path: Path) -> None:
    ds = titles_dataset(["x", "y", "z"])
    a = build_text_embeddings(ds, cfg(tmp_path, use_cache=False), progress=False)
    b = build_text_embeddings(ds, cfg(tmp_path, use_cache=False), progress=False)
    assert torch.equal(a.matrix, b.matrix)


def test_normalize_option(tmp_path: Path) -> None:
    emb = build_text_embeddings(
        titles_dataset(["x", "y"]), cfg(tmp_path, encoder_config={"normalize": True}), progress=False
    )
    norms = emb.matrix.norm(dim=1)
    assert norms[0] == 0 and torch.allclose(norms[1:], torch.ones(2))


def test_missing_text_error_lists_ids(tmp_path: Path) -> None:
    ds = titles_dataset(["Milk", "", "Tea", ""])
    with pytest.raises(TextError) as err:
        build_text_embeddings(ds, cfg(tmp_path), progress=False)
    msg = str(err.value)
    assert "2 of 4 items have no text" in msg and "i2 (id 2)" in msg and "i4 (id 4)" in msg
    assert "on_missing='zero'" in msg


def test_missing_text_zero_rows_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = titles_dataset(["Milk", "", "Tea"])
    with caplog.at_level(logging.WARNING, logger="padrec.text"):
        emb = build_text_embeddings(ds, cfg(tmp_path, on_missing="zero"), progress=False)
    assert emb.missing_ids == [2]
    assert torch.count_nonzero(emb.matrix[2]) == 0 and torch.count_nonzero(emb.matrix[1]) > 0
    assert "1 of 3 items have no text" in caplog.text


def test_all_missing_is_an_error_even_with_zero(tmp_path: Path) -> None:
    with pytest.raises(TextError, match="all 2 items lack text"):
        build_text_embeddings(titles_dataset(["", " "]), cfg(tmp_path, on_missing="zero"), progress=False)


def test_nan_vectors_rejected(tmp_path: Path) -> None:
    ds = titles_dataset(["fine", "broken"])
    with pytest.raises(TextError, match="NaN/inf for 1 text"):
        build_text_embeddings(ds, cfg(tmp_path, encoder_config={"nan_text": "broken"}), progress=False)


def test_table_row_count_mismatch(tmp_path: Path) -> None:
    ds = titles_dataset(["a", "b"])
    ds.item_table = ds.item_table.iloc[:2]
    with pytest.raises(TextError, match="item_table has 2 rows but there are 3 item ids"):
        build_text_embeddings(ds, cfg(tmp_path), progress=False)


def test_ids_only_dataset_has_clear_error(tmp_path: Path) -> None:
    ds = titles_dataset(["a", "b"])
    ds.item_table = ds.item_table.drop(columns=["title"])
    with pytest.raises(TextError, match="ids only"):
        build_text_embeddings(ds, cfg(tmp_path), progress=False)


def test_custom_template_over_fields(tmp_path: Path) -> None:
    ds = make_dataset([{"title": "Milk", "brand": "Acme"}, {"title": "Tea", "brand": ""}])
    emb = build_text_embeddings(ds, cfg(tmp_path, template="{title}[ by {brand}]"), progress=False)
    np.testing.assert_array_equal(emb.matrix[1].numpy(), hash_vector("Milk by Acme", 6))
    np.testing.assert_array_equal(emb.matrix[2].numpy(), hash_vector("Tea", 6))
    assert emb.template == "custom:{title}[ by {brand}]"


def test_unknown_encoder_and_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown encoder 'bert'.*sentence-transformers"):
        build_text_embeddings(titles_dataset(["a"]), cfg(tmp_path, encoder="bert"), progress=False)
    with pytest.raises(ConfigError, match="text.encoder_config.dimm"):
        build_text_embeddings(titles_dataset(["a"]), cfg(tmp_path, encoder_config={"dimm": 3}), progress=False)
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(TextConfig, {"batchsize": 3}, where="text")


def test_all_encoders_registered() -> None:
    assert {"sentence-transformers", "causal-lm", "openai", "precomputed"} <= set(ENCODERS.names())


def test_missing_dependency_names_pip_command() -> None:
    with pytest.raises(MissingDependencyError, match="pip install not-a-real-pkg"):
        require("not_a_real_pkg_xyz", "pip install not-a-real-pkg", "the test encoder")


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="not a valid torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bad_device_is_a_text_error(tmp_path: Path) -> None:
    """build_text_embeddings reports device problems as TextError (the CLI shows those)."""
    with pytest.raises(TextError, match="device 'gpu0' is not a valid torch device"):
        build_text_embeddings(titles_dataset(["a"]), cfg(tmp_path, device="gpu0"), progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(TextError, match="CUDA is not available"):
            build_text_embeddings(titles_dataset(["a"]), cfg(tmp_path, device="cuda"), progress=False)


def test_threads_restored(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    build_text_embeddings(titles_dataset(["a"]), cfg(tmp_path, num_threads=1, use_cache=False), progress=False)
    assert torch.get_num_threads() == before


def test_save_load_round_trip(tmp_path: Path) -> None:
    emb = build_text_embeddings(titles_dataset(["a", "b"]), cfg(tmp_path), progress=False)
    st, js = emb.save(tmp_path / "out" / "emb.safetensors")
    assert st.name == "emb.safetensors" and js.name == "emb.json"
    back = TextEmbeddings.load(tmp_path / "out" / "emb")
    assert torch.equal(back.matrix, emb.matrix) and back.item_ids == emb.item_ids
    assert back.encoder == "test-hash" and back.template == "title"
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_l2_normalize_keeps_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]])


def test_nearest_neighbours_excludes_self_padding_and_zero_rows() -> None:
    m = torch.tensor([[0, 0], [1, 0], [0.9, 0.1], [0, 1], [0, 0], [1, 0]], dtype=torch.float32)
    nb = nearest_neighbours(m, [1, 3], k=3)
    assert nb[0].item == 1 and nb[0].ids == [5, 2, 3]  # tie at 1.0 broken by id; 4 (zero row) excluded
    assert pytest.approx(nb[0].scores[0]) == 1.0
    assert nb[1].ids[0] == 2
    with pytest.raises(TextError, match="outside 1..5"):
        nearest_neighbours(m, [0], k=2)


def test_pick_items_reproducible() -> None:
    a = pick_items(100, 5, seed=3)
    assert a == pick_items(100, 5, seed=3) and len(set(a)) == 5 and all(1 <= i <= 100 for i in a)
    assert pick_items(3, 10) == [1, 2, 3]
