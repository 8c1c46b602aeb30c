"""data.holdout_items: items removed from a dataset entirely (cold-start / zero-shot simulation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from padrec.config import ConfigError, from_dict, to_dict
from padrec.data import (
    DataConfig,
    DataError,
    HoldoutConfig,
    PreprocessConfig,
    SplitConfig,
    apply_holdout,
    compute_item_stats,
    holdout_item_ids,
    load_dataset,
    load_holdout_item_ids,
    make_split,
)
from padrec.data.cache import entry_dir
from padrec.data.loading import _plan
from padrec.rundir import config_changes

# Raw item ids 1..12 (integers, so every format can hold them), titles with an HTML reference.
ITEMS = [str(i) for i in range(1, 13)]
TITLES = {i: f"Item {i} &amp; co" for i in ITEMS}
SEQUENCES = {
    "u1": ["1", "2", "3", "4", "5"],
    "u2": ["3", "4", "5", "6", "7", "8"],
    "u3": ["7", "8", "9", "10", "11", "12", "1"],
    "u4": ["2", "9", "2", "9"],
    "u5": ["11", "12", "1", "2", "3"],
    "u6": ["6", "10", "5", "4", "3", "8"],
}


def write_format(fmt: str, d: Path) -> DataConfig:
    """The toy data in format ``fmt`` under ``d``; the DataConfig reading it (no cache)."""
    d.mkdir(parents=True, exist_ok=True)
    if fmt == "pad_csv":
        rows = [",user,history"] + [f'{k},{u},"{s!r}"' for k, (u, s) in enumerate(SEQUENCES.items())]
        (d / "Toy_cleaned_history.csv").write_text("\n".join(rows) + "\n")
        (d / "metadata_Toy.csv").write_text("asin,title\n" + "".join(f"{i},{TITLES[i]}\n" for i in ITEMS))
        return DataConfig(name="toy", format="pad_csv", path=str(d), use_cache=False)
    if fmt == "faerec_txt":
        (d / "Toy.txt").write_text("".join(f"{u[1:]} {' '.join(s)}\n" for u, s in SEQUENCES.items()))
        return DataConfig(name="toy", format="faerec_txt", path=str(d / "Toy.txt"), use_cache=False)
    if fmt == "recbole_atomic":
        (d / "Toy.item").write_text("item_id:token\ttitle:token_seq\n" + "".join(f"{i}\t{TITLES[i]}\n" for i in ITEMS))
        lines = [f"{u}\t{' '.join(s[:-1])}\t{s[-1]}\n" for u, s in SEQUENCES.items()]
        (d / "Toy.test.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n" + "".join(lines))
        return DataConfig(name="toy", format="recbole_atomic", path=str(d), use_cache=False)
    assert fmt == "interactions"
    rows = ["user_id,item_id,timestamp"]
    for u, s in SEQUENCES.items():
        rows += [f"{u},{i},{t}" for t, i in enumerate(s)]
    (d / "inter.csv").write_text("\n".join(rows) + "\n")
    (d / "items.csv").write_text("item_id,title\n" + "".join(f"{i},{TITLES[i]}\n" for i in ITEMS))
    return DataConfig(
        name="toy",
        format="interactions",
        path=str(d / "inter.csv"),
        items_path=str(d / "items.csv"),
        preprocess=PreprocessConfig(min_user_interactions=0, item_order="item_table"),
        use_cache=False,
    )


def raw_sequences(ds) -> dict[str, list[str]]:
    return {str(u): [str(ds.item_ids[i]) for i in s] for u, s in zip(ds.user_ids, ds.sequences)}


def with_holdout(cfg: DataConfig, **holdout) -> DataConfig:
    return dataclasses.replace(cfg, holdout_items=HoldoutConfig(**holdout))


def check_reduced(full, reduced, held: list[str]) -> None:
    """Every mechanical promise of a reduced dataset, against the full one."""
    held_set = set(held)
    assert reduced.held_out_item_ids() == held == reduced.held_out.item_ids
    # catalogue: held items gone, the rest in their former order, ids 1..N' compact
    assert list(reduced.item_ids) == [x for x in full.item_ids if x not in held_set]
    assert reduced.num_items == full.num_items - len(held)
    assert len(reduced.item_table) == reduced.num_items + 1
    assert list(reduced.item_table.columns) == list(full.item_table.columns)
    if "title" in full.item_table.columns:
        by_raw = dict(zip(full.item_ids, full.item_table["title"]))
        assert reduced.item_table["title"].tolist() == [by_raw[x] for x in reduced.item_ids]
    # sequences: the full ones without the held items; users left with nothing removed
    expected = {u: [i for i in s if i not in held_set] for u, s in raw_sequences(full).items()}
    assert raw_sequences(reduced) == {u: s for u, s in expected.items() if s}
    assert reduced.held_out.removed_users == [u for u, s in expected.items() if not s]
    flat = np.concatenate(reduced.sequences)
    assert flat.min() >= 1 and flat.max() <= reduced.num_items
    removed = sum(len(s) for s in raw_sequences(full).values()) - reduced.num_interactions
    assert reduced.held_out.removed_interactions == removed
    # the held-out items' own record: former ids, item-table rows, id map
    info = reduced.held_out
    assert [full.item_ids[i] for i in info.original_ids] == held
    assert list(info.item_table.columns) == list(full.item_table.columns)
    for k, i in enumerate(info.original_ids):
        assert info.item_table.iloc[k].tolist() == full.item_table.iloc[i].tolist()
        assert info.id_map[i] == 0
    kept = [i for i in range(1, full.num_items + 1) if full.item_ids[i] not in held_set]
    assert [reduced.item_ids[info.id_map[i]] for i in kept] == [full.item_ids[i] for i in kept]
    assert reduced.source["holdout_items"]["items"] == len(held)


@pytest.mark.parametrize("fmt", ["pad_csv", "faerec_txt", "recbole_atomic", "interactions"])
def test_every_format(tmp_path, fmt):
    cfg = write_format(fmt, tmp_path / fmt)
    full = load_dataset(cfg)
    reduced = load_dataset(with_holdout(cfg, fraction=0.25, seed=3))
    held = holdout_item_ids(full, HoldoutConfig(fraction=0.25, seed=3))
    assert len(held) == 3  # round(0.25 * 12)
    check_reduced(full, reduced, held)
    assert full.held_out is None and "holdout_items" not in full.source


def test_same_items_for_every_format(tmp_path):
    """The sample depends on the raw ids and the seed only, not on the format or catalogue order."""
    sets = {
        fmt: load_dataset(with_holdout(write_format(fmt, tmp_path / fmt), fraction=0.4, seed=7)).held_out_item_ids()
        for fmt in ("pad_csv", "faerec_txt", "recbole_atomic", "interactions")
    }
    assert len({tuple(sorted(s)) for s in sets.values()}) == 1
    rev = holdout_item_ids(list(reversed(ITEMS)), {"fraction": 0.4, "seed": 7})
    assert sorted(rev) == sorted(sets["pad_csv"])


def test_determinism_seeds_and_nesting(tmp_path):
    full = load_dataset(write_format("faerec_txt", tmp_path))
    ids = [f"item{k}" for k in range(1000)]
    a = holdout_item_ids(ids, HoldoutConfig(fraction=0.1, seed=0))
    assert a == holdout_item_ids(ids, HoldoutConfig(fraction=0.1, seed=0))
    assert len(a) == 100 and a == [i for i in ids if i in set(a)]  # catalogue order
    b = holdout_item_ids(ids, HoldoutConfig(fraction=0.1, seed=1))
    assert set(a) != set(b)
    assert set(holdout_item_ids(ids, HoldoutConfig(fraction=0.05, seed=0))) < set(a)
    # the same from a dataset, a dataset's ids with padding, a DataConfig and the loaded result
    cfg = write_format("faerec_txt", tmp_path)
    h = HoldoutConfig(fraction=0.5, seed=11)
    expected = holdout_item_ids(full, h)
    assert holdout_item_ids(list(full.item_ids), h) == expected
    assert load_holdout_item_ids(dataclasses.replace(cfg, holdout_items=h)) == expected
    assert load_dataset(dataclasses.replace(cfg, holdout_items=h)).held_out_item_ids() == expected
    assert holdout_item_ids(full, HoldoutConfig(fraction=0.5, seed=12)) != expected


def test_file_variant(tmp_path):
    cfg = write_format("pad_csv", tmp_path / "d")
    full = load_dataset(cfg)
    f = tmp_path / "held.txt"
    f.write_text("  9\n\n2\n11  \n")
    reduced = load_dataset(with_holdout(cfg, file=str(f)))
    check_reduced(full, reduced, ["2", "9", "11"])  # catalogue order, not file order
    assert reduced.source["holdout_items"] == {
        "file": str(f),
        "items": 3,
        "removed_interactions": 9,  # items 2 (4 times), 9 (3) and 11 (2)
        "removed_users": 1,
    }
    assert reduced.held_out.removed_users == ["u4"]  # its every item (2, 9) was held out
    assert reduced.held_out.records()[0] == {"item_id": "2", "title": "Item 2 &amp; co"}
    assert reduced.held_out.titles()[0] == "Item 2 & co"


def test_short_users_follow_the_protocol(tmp_path):
    """Held-out items leave u1 with 2 items and u4 with none: u4 is removed, u1 is kept and is
    then a short user for the split protocol (pad: dropped; faerec: trains, not evaluated)."""
    cfg = write_format("faerec_txt", tmp_path / "d")
    f = tmp_path / "held.txt"
    f.write_text("2\n3\n4\n9\n")
    ds = load_dataset(with_holdout(cfg, file=str(f)))
    seqs = raw_sequences(ds)
    assert "4" not in seqs and seqs["1"] == ["1", "5"]  # user ids are faerec's numbers
    u1 = list(ds.user_ids).index("1")
    pad = make_split(ds, SplitConfig(protocol="pad"))
    assert u1 not in pad.train_users and u1 not in pad.test.users
    faerec = make_split(ds, SplitConfig(protocol="faerec"))
    assert u1 in faerec.train_users and u1 not in faerec.test.users
    stats = compute_item_stats(ds, 2, 0.2, "train")
    assert len(stats.train_frequency) == ds.num_items + 1


def test_file_errors(tmp_path):
    cfg = write_format("faerec_txt", tmp_path / "d")
    f = tmp_path / "held.txt"
    cases = [
        ("1\n99\n", r"held\.txt: line 2: item id '99' is not in the catalogue of dataset 'toy'"),
        ("1\n\n3\n1\n", r"held\.txt: line 4: item id '1' is listed twice \(first at line 1\)"),
        ("\n  \n", r"held\.txt: data\.holdout_items\.file \(held-out item list\) is empty"),
        ("".join(f"{i}\n" for i in ITEMS), r"lists every one of the 12 items"),
    ]
    for text, message in cases:
        f.write_text(text)
        with pytest.raises(DataError, match=message):
            load_dataset(with_holdout(cfg, file=str(f)))
    with pytest.raises(DataError, match=r"missing\.txt: data\.holdout_items\.file \(held-out item list\) not found"):
        load_dataset(with_holdout(cfg, file=str(tmp_path / "missing.txt")))
    f.write_bytes(b"1\n\xff\n")
    with pytest.raises(DataError, match=r"held\.txt: .* is not UTF-8"):
        load_dataset(with_holdout(cfg, file=str(f)))


def test_config_errors(tmp_path):
    def data(holdout):
        return from_dict(DataConfig, {"holdout_items": holdout}, where="data")

    assert data(None).holdout_items is None
    assert data({"fraction": 0.1}).holdout_items == HoldoutConfig(fraction=0.1, seed=0)
    assert data({"file": "x.txt"}).holdout_items == HoldoutConfig(file="x.txt")
    cases = [
        ({"fraction": 1.0}, r"data\.holdout_items\.fraction must be in \(0, 1\)"),
        ({"fraction": 0}, r"data\.holdout_items\.fraction must be in \(0, 1\)"),
        ({"fraction": "many"}, r"data\.holdout_items\.fraction: expected a number"),
        ({"fraction": 0.1, "seed": "x"}, r"data\.holdout_items\.seed: expected an integer"),
        ({}, r"data\.holdout_items: set exactly one of fraction .* and file"),
        ({"fraction": 0.1, "file": "x.txt"}, r"data\.holdout_items: set exactly one of fraction .* and file"),
        ({"fracton": 0.1}, r"unknown config key\(s\) data\.holdout_items\.fracton"),
        (0.1, r"data\.holdout_items: expected a mapping for HoldoutConfig"),
    ]
    for value, message in cases:
        with pytest.raises(ConfigError, match=message):
            data(value)
    full = load_dataset(write_format("faerec_txt", tmp_path))
    with pytest.raises(DataError, match=r"data\.holdout_items\.fraction = 0\.01 of its 12 items holds out 0 item"):
        apply_holdout(full, HoldoutConfig(fraction=0.01))
    with pytest.raises(DataError, match=r"holds out 12 item"):
        apply_holdout(full, {"fraction": 0.99})
    with pytest.raises(DataError, match=r"data\.holdout_items is not set"):
        load_holdout_item_ids(write_format("faerec_txt", tmp_path))
    with pytest.raises(DataError, match=r"already holds 6 items out"):
        apply_holdout(apply_holdout(full, {"fraction": 0.5}), {"fraction": 0.5})


def test_experiment_config_and_run_identity():
    from padrec.experiment.config import load_experiment_config

    cfg = load_experiment_config(
        {"data": {"format": "builtin", "name": "prime_pantry", "holdout_items": {"fraction": 0.1, "seed": 0}}}
    )
    assert cfg.data.holdout_items == HoldoutConfig(fraction=0.1, seed=0)
    plain = to_dict(load_experiment_config({}))
    assert plain["data"]["holdout_items"] is None
    # a run directory written before the option existed is the same run as one without it
    old = {**plain, "data": {k: v for k, v in plain["data"].items() if k != "holdout_items"}}
    assert config_changes(old, plain, ("data",)) == []
    assert config_changes(plain, to_dict(cfg), ("data",)) != []


def test_cache_holds_the_full_dataset(tmp_path):
    """Cache keys and entries are those of the full dataset, with or without holdout_items."""
    cfg = dataclasses.replace(write_format("pad_csv", tmp_path / "d"), use_cache=True, cache_dir=str(tmp_path / "c"))
    full = load_dataset(cfg)
    first = load_dataset(with_holdout(cfg, fraction=0.25))  # from the cache entry the full load wrote
    entries = sorted((tmp_path / "c" / "datasets").iterdir())
    assert len(entries) == 1
    _, files, options, _ = _plan(cfg)
    assert entries[0] == entry_dir(tmp_path / "c", "toy", files, options)
    uncached = load_dataset(with_holdout(dataclasses.replace(cfg, use_cache=False), fraction=0.25))
    assert raw_sequences(first) == raw_sequences(uncached)
    assert list(first.item_ids) == list(uncached.item_ids)
    assert load_dataset(cfg).held_out is None and full.held_out is None


def test_prime_pantry_tenth():
    full = load_dataset(DataConfig(use_cache=False))
    held = holdout_item_ids(full, HoldoutConfig(fraction=0.1, seed=0))
    assert len(held) == 835  # round(0.1 * 8,347)
    cfg = DataConfig(use_cache=False, holdout_items=HoldoutConfig(fraction=0.1, seed=0))
    ds = load_dataset(cfg)
    assert ds.held_out_item_ids() == held
    assert ds.num_items == 8347 - 835
    held_set = set(held)
    assert not any(str(ds.item_ids[i]) in held_set for s in ds.sequences for i in s)
    n_held = sum(str(full.item_ids[i]) in held_set for s in full.sequences for i in s)
    assert ds.num_interactions == 115_004 - n_held
    assert ds.held_out.removed_interactions == n_held
    assert 0.05 < n_held / 115_004 < 0.2
    assert ds.num_users == 12_871 - len(ds.held_out.removed_users)
    assert set(ds.held_out.item_table.columns) == {"title"} and all(ds.held_out.titles())
    split = make_split(ds, SplitConfig(protocol="pad"))
    assert split.num_items == ds.num_items
    assert held != holdout_item_ids(full, HoldoutConfig(fraction=0.1, seed=1))
