"""Splits, item statistics and summaries, pinned to the PAD and FAERec releases.

Facts checked against the official code:
- PAD (Applied-Machine-Learning-Lab/PAD): ``data_utils/dataset.py``
  (``BuildTrainDataset_new_amazon_pantry``) cuts Prime Pantry's frequency-sorted
  items at positions ``[0, 35, 100, 205, 361, 585, 898, 1357, 2074, 3348, 8348]``
  (the padding row 0 sits among the zero-frequency items of the last bucket).
- FAERec (ZhifuWei/FAERec): ``FAERec/src/datasets.py`` trains on ``items[:-3] -> items[1:-2]``,
  validates on ``items[-2]`` and tests on ``items[-1]``, window 50; users with 1-2 items are
  not evaluated (answer 0, skipped in ``trainers.py``), users with 2 items train on the pair,
  users with 3 items are evaluated but have no training target; ``ht_process.py`` takes the
  ``int(0.2 * #items)`` most frequent items (full sequences) as head.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from padrec.data import (
    SequenceDataset,
    SplitConfig,
    compute_item_stats,
    make_split,
    read_faerec_txt,
    read_pad_csv,
)
from padrec.data.stats import frequency_buckets
from padrec.data.summary import dataset_summary, print_summary

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data folder {SHARED} is missing")

PAD_PANTRY_CUTS = [0, 35, 100, 205, 361, 585, 898, 1357, 2074, 3348, 8348]


def toy(seqs: list[list[int]], n_items: int) -> SequenceDataset:
    return SequenceDataset(
        "toy",
        [np.asarray(s, np.int64) for s in seqs],
        np.array([str(i) for i in range(len(seqs))], object),
        np.array(["[PAD]"] + [str(i) for i in range(1, n_items + 1)], object),
        pd.DataFrame(index=range(n_items + 1)),
    )


@pytest.fixture(scope="module")
def pantry() -> SequenceDataset:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} is missing")
    pp = SHARED / "prime_pantry"
    return read_pad_csv(pp / "Prime_Pantry_cleaned_history.csv", pp / "metadata_Prime_Pantry.csv")


@pytest.fixture(scope="module")
def beauty() -> SequenceDataset:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} is missing")
    return read_faerec_txt(SHARED / "beauty_faerec" / "Beauty.txt")


# --------------------------------------------------------------------------- bucket rule


def test_greedy_equal_mass_buckets() -> None:
    # total 20, target 2 per bucket with B=10 -> cut whenever a bucket reaches 2.
    freq = np.array([0, 5, 1, 1, 3, 0, 2, 2, 1, 1, 4])
    b = frequency_buckets(freq, 10)
    # order by frequency (ties by id): 1(5) 10(4) 4(3) 6(2) 7(2) 2(1) 3(1) 8(1) 9(1) 5(0)
    expected = {1: 1, 10: 2, 4: 3, 6: 4, 7: 5, 2: 6, 3: 6, 8: 7, 9: 7, 5: 10}
    assert b[0] == 0
    assert {i: int(b[i]) for i in range(1, 11)} == expected


def test_buckets_edge_cases() -> None:
    assert frequency_buckets(np.array([0, 0, 0]), 10).tolist() == [0, 10, 10]
    assert frequency_buckets(np.array([0, 100, 1]), 10).tolist() == [0, 1, 2]  # fewer buckets than B
    b = frequency_buckets(np.array([0] + [1] * 100), 10)
    assert np.bincount(b[1:]).tolist() == [0] + [10] * 10


def test_head_is_floor_of_fraction_of_occurring_items() -> None:
    ds = toy([[1, 2, 3, 1, 4], [1, 2, 5, 6, 7]], n_items=9)  # items 8 and 9 never occur
    st = compute_item_stats(ds, num_buckets=4, head_fraction=0.3, head_basis="full")  # 4 items train
    assert int(st.is_head.sum()) == int(0.3 * 7) == 2
    assert st.is_head[[1, 2]].all()


# --------------------------------------------------------------------------- PAD release


@needs_shared
def test_pantry_train_frequency_equals_release_file(pantry: SequenceDataset) -> None:
    fre = pd.read_csv(SHARED / "prime_pantry" / "Prime_Pantry_fre.csv")
    assert fre["id"].tolist() == list(range(pantry.num_items + 1))
    st = compute_item_stats(pantry)
    assert np.array_equal(st.train_frequency, fre["fre"].to_numpy())


@needs_shared
def test_pantry_buckets_reproduce_release_cut(pantry: SequenceDataset) -> None:
    st = compute_item_stats(pantry)
    sizes = np.bincount(st.bucket[1:], minlength=11)[1:].tolist()
    release = np.diff(PAD_PANTRY_CUTS).tolist()
    release[-1] -= 1  # the release's last slice also holds the padding row 0
    assert sizes == release == [35, 65, 105, 156, 224, 313, 459, 717, 1274, 4999]
    assert [(lo, hi) for lo, hi, _, _ in st.bucket_bounds] == [
        (173, 486),
        (118, 169),
        (70, 117),
        (48, 70),
        (33, 48),
        (24, 33),
        (16, 24),
        (10, 16),
        (5, 10),
        (0, 5),
    ]
    assert [mass for *_, mass in st.bucket_bounds] == [8957, 9000, 8966, 8959, 8930, 8932, 8932, 8927, 8928, 8731]
    # Membership agrees with the release's slices wherever the frequency is not tied across a cut.
    fre = st.train_frequency
    order = np.lexsort((np.arange(len(fre) - 1), -fre[1:])) + 1
    for k in range(10):
        inner = order[PAD_PANTRY_CUTS[k] : min(PAD_PANTRY_CUTS[k + 1], len(order))]
        assert (st.bucket[inner] == k + 1).all()
    assert np.bincount(st.group[1:]).tolist() == [205, 1152, 6990]  # warm 1-3, median 4-7, cold 8-10


@needs_shared
def test_pantry_pad_protocol(pantry: SequenceDataset) -> None:
    sp = make_split(pantry, SplitConfig(protocol="pad"))
    assert sp.config.max_len == 20
    assert len(sp.valid) == len(sp.test) == len(sp.train_users) == 12871
    assert int((sp.train_targets > 0).sum()) == 76391  # equals RecBole's examples per epoch
    s0 = pantry.sequences[0]
    assert sp.test.targets[0] == s0[-1] and sp.valid.targets[0] == s0[-2]
    assert sp.test.seen(0).tolist() == s0[:-1].tolist()
    summary = dataset_summary(pantry, compute_item_stats(pantry), sp)
    assert summary["repeat_test_targets"] == 336
    assert (summary["users"], summary["items"], summary["interactions"]) == (12871, 8347, 115004)
    assert summary["length"] == {"min": 5, "mean": pytest.approx(8.9351, abs=1e-4), "median": 7.0, "max": 23}
    assert [b["items"] for b in summary["buckets"]] == [35, 65, 105, 156, 224, 313, 459, 717, 1274, 4999]
    console = Console(record=True, width=120)
    print_summary(summary, console)
    text = console.export_text()
    assert "12,871" in text and "4,999" in text and "warm" in text


# --------------------------------------------------------------------------- FAERec release


def test_faerec_short_sequence_rules() -> None:
    ds = toy([[1], [1, 2], [1, 2, 3], [1, 2, 3, 4]], n_items=4)
    sp = make_split(ds, SplitConfig(protocol="faerec"))
    assert sp.valid.users.tolist() == sp.test.users.tolist() == [2, 3]  # 1-2 items: not evaluated
    assert sp.train_users.tolist() == [1, 3]  # 2 items: trains on the pair; 3 items: no target
    assert sp.train_inputs[0, -1] == 1 and sp.train_targets[0, -1] == 2
    assert sp.train_inputs[1, -2:].tolist() == [0, 1] and sp.train_targets[1, -2:].tolist() == [0, 2]
    assert sp.valid.histories[0, -1] == 1 and sp.valid.targets[0] == 2
    assert sp.test.histories[0, -2:].tolist() == [1, 2] and sp.test.targets[0] == 3


@needs_shared
def test_beauty_faerec_protocol(beauty: SequenceDataset) -> None:
    sp = make_split(beauty, SplitConfig(protocol="faerec"))
    assert sp.config.max_len == 50
    lengths = beauty.lengths
    assert int((lengths < 3).sum()) == 1706 and int((lengths == 3).sum()) == 3094
    assert len(sp.valid) == len(sp.test) == 52204 - 1706 == 50498
    assert len(sp.train_users) == 52204 - 460 - 3094 == 48650
    long_user = int(np.argmax(lengths))  # 293 items: the window keeps the last 50 training positions
    row = int(np.flatnonzero(sp.train_users == long_user)[0])
    seq = beauty.sequences[long_user]
    assert sp.train_inputs[row].tolist() == seq[:-3][-50:].tolist()
    assert sp.train_targets[row].tolist() == seq[1:-2][-50:].tolist()
    st = compute_item_stats(beauty, head_basis="full")
    assert int(st.is_head.sum()) == int(0.2 * 57289) == 11457
