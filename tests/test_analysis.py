"""Analyses (PAD Figs. 2, 3, 6): Kendall discrepancy, near/far distance split, bucket lifts, CLI outputs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import kendalltau
from typer.testing import CliRunner

from padrec.analysis import (
    compare_buckets,
    distance_distributions,
    history_target_pairs,
    kendall_discrepancy,
    load_results,
    overlap_coefficient,
    pair_distances,
    plot_bucket_comparison,
    plot_discrepancy,
    plot_distance_distributions,
    sample_item_pairs,
    separation_auc,
    split_near_far,
    to_jsonable,
)
from padrec.data.dataset import SequenceDataset
from padrec.data.protocols import EvalSet, SplitConfig, make_split
from padrec.data.stats import compute_item_stats
from padrec.io import write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eval_set(histories: np.ndarray, targets: np.ndarray) -> EvalSet:
    u = len(targets)
    return EvalSet(
        np.arange(u),
        np.asarray(histories, np.int64),
        np.asarray(targets, np.int64),
        np.zeros(u + 1, np.int64),
        np.zeros(0, np.int64),
    )


def _assert_png(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 2000
    assert path.read_bytes()[:8] == PNG_MAGIC


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- distances -----------------------------------------------------------------------------
def test_pair_distances_euclidean_and_cosine():
    emb = np.array([[0, 0], [3, 4], [0, 0], [6, 8], [-3, -4]], dtype=float)
    pairs = np.array([[1, 2], [1, 3], [1, 4]])
    np.testing.assert_allclose(pair_distances(emb, pairs), [5.0, 5.0, 10.0])
    # cosine: same direction -> 0, opposite -> 2, zero vector -> 1
    np.testing.assert_allclose(pair_distances(torch.tensor(emb), pairs, "cosine"), [1.0, 0.0, 2.0], atol=1e-12)
    with pytest.raises(ValueError, match="1..4"):
        pair_distances(emb, np.array([[0, 1]]))


def test_sample_item_pairs_distinct_seeded():
    p = sample_item_pairs(50, 300, seed=3)
    assert p.shape == (300, 2) and (p[:, 0] < p[:, 1]).all() and p.min() >= 1 and p.max() <= 50
    assert len({tuple(x) for x in p.tolist()}) == 300
    np.testing.assert_array_equal(p, sample_item_pairs(50, 300, seed=3))
    assert not np.array_equal(p, sample_item_pairs(50, 300, seed=4))
    dense = sample_item_pairs(5, 100)  # more than the 10 possible pairs: each pair once
    assert len(dense) == 10 and len({tuple(x) for x in dense.tolist()}) == 10


def test_split_near_far_top_and_bottom_ten_percent():
    rng = np.random.default_rng(0)
    d = rng.permutation(100).astype(float)
    near, far = split_near_far(d, 0.1)
    assert sorted(d[near]) == list(range(10)) and sorted(d[far]) == list(range(90, 100))
    near, far = split_near_far(np.arange(25.0), 0.1)  # floor(2.5) = 2 per group
    assert near.tolist() == [0, 1] and far.tolist() == [23, 24]


def test_distance_distributions_on_constructed_tables():
    n = 40
    pos = np.zeros((n + 1, 1))
    pos[1:, 0] = np.arange(1, n + 1)
    pairs = sample_item_pairs(n, 400, seed=1)
    d_id = np.abs(pos[pairs[:, 0], 0] - pos[pairs[:, 1], 0])
    # text space = ID space reversed in rank among the pairs' distances is hard to build; use two cases:
    res, samples = distance_distributions({"id": pos, "text": pos * 7.0}, pairs, return_samples=True)
    assert res["group_size"] == 40 and res["num_pairs"] == 400
    # a scaled copy: identical normalised distances, so identical groups and stats
    np.testing.assert_allclose(samples["id"]["near"], samples["text"]["near"])
    assert res["stats"]["id"]["near"]["mean"] == pytest.approx(res["stats"]["text"]["near"]["mean"])
    order = np.sort(d_id)
    assert res["stats"]["id"]["near"]["mean"] == pytest.approx(order[:40].mean() / d_id.mean())
    assert res["stats"]["id"]["far"]["mean"] == pytest.approx(order[-40:].mean() / d_id.mean())
    assert res["normalizer"]["text"] == pytest.approx(7 * d_id.mean())
    assert res["overlap"]["id"]["auc"] == pytest.approx(1.0) and res["overlap"]["id"]["overlap"] == 0.0
    assert res["rank_correlation"]["text"] == pytest.approx(1.0)
    # unrelated text space: the ID-near and ID-far groups look alike there
    rnd = np.random.default_rng(0).normal(size=(n + 1, 8))
    res2 = distance_distributions({"id": pos, "text": rnd}, pairs)
    assert 0.3 < res2["overlap"]["text"]["auc"] < 0.7 and res2["overlap"]["text"]["overlap"] > 0.4


def test_overlap_and_auc_limits():
    assert overlap_coefficient(np.zeros(5), np.ones(5)) == 0.0
    assert overlap_coefficient(np.arange(10.0), np.arange(10.0)) == pytest.approx(1.0)
    assert separation_auc(np.arange(5.0), np.arange(5.0) + 10) == 1.0
    assert separation_auc(np.ones(4), np.ones(4)) == 0.5


# --- discrepancy ---------------------------------------------------------------------------
def test_history_target_pairs_padding_repeats_and_sampling():
    es = _eval_set(np.array([[0, 3, 4, 1], [0, 0, 5, 2], [6, 2, 2, 7]]), np.array([1, 2, 2]))
    pairs = history_target_pairs(es)
    assert pairs.tolist() == [[3, 1], [4, 1], [5, 2], [6, 2], [7, 2]]
    assert len(history_target_pairs(es, drop_repeats=False)) == 9
    s1 = history_target_pairs(es, max_pairs=3, seed=5)
    assert len(s1) == 3 and np.array_equal(s1, history_target_pairs(es, max_pairs=3, seed=5))
    assert {tuple(x) for x in s1.tolist()} <= {tuple(x) for x in pairs.tolist()}


def test_tau_is_one_for_identical_and_distance_preserving_tables():
    rng = np.random.default_rng(0)
    n = 60
    a = rng.normal(size=(n + 1, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    pairs = sample_item_pairs(n, 800, seed=2)
    buckets = np.r_[0, rng.integers(1, 5, n)]
    res = kendall_discrepancy(a, a.copy(), pairs, buckets)
    assert res["overall"]["tau"] == pytest.approx(1.0)
    assert all(r["tau"] == pytest.approx(1.0) for r in res["by_target_bucket"].values())
    # rotation + scaling keeps every Euclidean ordering (different width is fine too)
    rot = np.concatenate([a @ q * 3.0, np.zeros((n + 1, 4))], axis=1)
    assert kendall_discrepancy(torch.tensor(a), rot, pairs)["overall"]["tau"] == pytest.approx(1.0)


def test_tau_is_about_zero_for_unrelated_tables():
    rng = np.random.default_rng(1)
    n = 300
    a, b = rng.normal(size=(n + 1, 32)), rng.normal(size=(n + 1, 24))
    pairs = sample_item_pairs(n, 6000, seed=0)
    for distance in ("euclidean", "cosine"):
        res = kendall_discrepancy(a, b, pairs, distance=distance)
        assert abs(res["overall"]["tau"]) < 0.05
        assert res["num_pairs"] == 6000 and res["by_target_bucket"] == {}


def test_tau_per_bucket_grouping_on_constructed_example():
    # 1-D tables. Target 1 (bucket 1): A and B order its history items the same way -> tau 1.
    # Target 2 (bucket 2): B reverses the order of its history items' distances -> tau -1.
    a = np.zeros((9, 1))
    b = np.zeros((9, 1))
    a[[1, 3, 4, 5], 0] = [0, 1, 2, 3]
    b[[1, 3, 4, 5], 0] = [0, 1, 2, 3]
    a[[2, 6, 7, 8], 0] = [100, 101, 102, 103]
    b[[2, 6, 7, 8], 0] = [100, 103, 102, 101]
    buckets = np.array([0, 1, 2, 3, 3, 3, 3, 3, 3])
    groups = np.array([-1, 0, 1, 2, 2, 2, 2, 2, 2])
    pairs = np.array([[3, 1], [4, 1], [5, 1], [6, 2], [7, 2], [8, 2]])
    res = kendall_discrepancy(a, b, pairs, buckets, groups=groups)
    assert res["by_target_bucket"][1] == {
        "tau": pytest.approx(1.0),
        "p_value": pytest.approx(0.333, abs=1e-3),
        "pairs": 3,
    }
    assert res["by_target_bucket"][2]["tau"] == pytest.approx(-1.0) and res["by_target_bucket"][2]["pairs"] == 3
    assert res["by_target_bucket"][3]["pairs"] == 0 and np.isnan(res["by_target_bucket"][3]["tau"])
    # every history item sits in bucket 3: its tau is the overall one
    assert res["by_history_bucket"][3]["pairs"] == 6
    assert res["by_history_bucket"][3]["tau"] == pytest.approx(res["overall"]["tau"])
    da, db = np.abs(a[pairs[:, 0], 0] - a[pairs[:, 1], 0]), np.abs(b[pairs[:, 0], 0] - b[pairs[:, 1], 0])
    assert res["overall"]["tau"] == pytest.approx(kendalltau(da, db).statistic)
    assert res["by_target_group"]["warm"]["tau"] == pytest.approx(1.0)
    assert res["by_target_group"]["median"]["tau"] == pytest.approx(-1.0)
    assert res["by_target_group"]["cold"]["pairs"] == 0
    with pytest.raises(ValueError, match="rows"):
        kendall_discrepancy(a, b[:5], pairs)


# --- bucket comparison ---------------------------------------------------------------------
def _result(overall: float, buckets: dict[int, float], groups: dict[str, float]) -> dict:
    return {
        "overall": {"NDCG@10": overall, "HR@10": 2 * overall},
        "by_bucket": {str(b): {"NDCG@10": v, "HR@10": v, "users": 10 * b} for b, v in buckets.items()},
        "by_group": {g: {"NDCG@10": v, "users": 5} for g, v in groups.items()},
    }


def test_compare_buckets_lifts():
    ra = _result(0.10, {1: 0.2, 2: 0.1, 3: 0.0}, {"warm": 0.2, "median": 0.05, "cold": 0.0})
    rb = _result(0.12, {1: 0.3, 2: 0.05, 3: 0.01}, {"warm": 0.25, "median": 0.1, "cold": None})
    del rb["by_bucket"]["2"]
    c = compare_buckets(ra, rb, "NDCG@10", names=("sasrec", "pad"))
    assert c["overall"]["lift"] == pytest.approx(0.2) and c["overall"]["diff"] == pytest.approx(0.02)
    assert c["by_bucket"]["1"] == {
        "a": 0.2,
        "b": 0.3,
        "lift": pytest.approx(0.5),
        "diff": pytest.approx(0.1),
        "users_a": 10,
        "users_b": 10,
    }
    assert c["by_bucket"]["2"]["b"] is None and c["by_bucket"]["2"]["lift"] is None
    assert c["by_bucket"]["3"]["lift"] is None and c["by_bucket"]["3"]["diff"] == pytest.approx(0.01)
    assert list(c["by_group"]) == ["warm", "median", "cold"]
    assert c["by_group"]["warm"]["lift"] == pytest.approx(0.25) and c["by_group"]["median"]["lift"] == pytest.approx(
        1.0
    )
    assert c["by_group"]["cold"]["lift"] is None
    with pytest.raises(KeyError, match="NDCG@20"):
        compare_buckets(ra, rb, "NDCG@20")


def test_load_results_single_and_multi_seed(tmp_path):
    run = tmp_path / "single"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"test": _result(0.1, {1: 0.2}, {"warm": 0.2}), "valid": {}}))
    assert load_results(run)["overall"]["NDCG@10"] == 0.1
    multi = tmp_path / "multi"
    for s, v in ((1, 0.1), (2, 0.3)):
        (multi / f"seed_{s}").mkdir(parents=True)
        (multi / f"seed_{s}" / "results.json").write_text(json.dumps({"test": _result(v, {1: v}, {"warm": v})}))
    # runs recorded relative to another working directory still resolve under the summary's folder
    (multi / "summary.json").write_text(
        json.dumps({"seeds": [1, 2], "per_seed": [], "runs": ["elsewhere/seed_1", "elsewhere/seed_2"]})
    )
    avg = load_results(multi)
    assert avg["overall"]["NDCG@10"] == pytest.approx(0.2) and avg["by_bucket"]["1"]["NDCG@10"] == pytest.approx(0.2)
    assert avg["by_bucket"]["1"]["users"] == 10 and len(avg["seeds"]) == 2
    with pytest.raises(FileNotFoundError, match="results.json nor summary.json"):
        load_results(tmp_path)


def test_plots_and_json_written(tmp_path):
    ra = _result(0.10, {b: 0.2 / b for b in range(1, 11)}, {"warm": 0.2, "median": 0.05, "cold": 0.01})
    rb = _result(0.12, {b: 0.25 / b for b in range(1, 11)}, {"warm": 0.22, "median": 0.08, "cold": 0.03})
    c = compare_buckets(ra, rb)
    _assert_png(plot_bucket_comparison(c, tmp_path / "b.png"))
    js = write_json(tmp_path / "b.json", to_jsonable(c | {"nan": float("nan")}))
    assert json.loads(js.read_text())["nan"] is None
    rng = np.random.default_rng(0)
    a = rng.normal(size=(51, 4))
    d = kendall_discrepancy(
        a, a + rng.normal(size=a.shape), sample_item_pairs(50, 500), np.r_[0, rng.integers(1, 4, 50)]
    )
    _assert_png(plot_discrepancy(d, tmp_path / "d.png"))
    r, s = distance_distributions(
        {"id": a, "text": rng.normal(size=(51, 3))}, sample_item_pairs(50, 500), return_samples=True
    )
    _assert_png(plot_distance_distributions(r, s, tmp_path / "x.png"))
    _no_temp_files(tmp_path)


# --- CLI -----------------------------------------------------------------------------------
def _fake_run(n_items: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, n_items + 1, size=int(rng.integers(4, 12))) for _ in range(80)]
    ds = SequenceDataset(
        "toy",
        seqs,
        np.arange(80).astype(str),
        np.array(["[PAD]"] + [f"i{i}" for i in range(n_items)]),
        pd.DataFrame(index=range(n_items + 1)),
    )
    prepared = SimpleNamespace(
        dataset=ds,
        stats=compute_item_stats(ds, num_buckets=5),
        split=make_split(ds, SplitConfig(protocol="pad", max_len=8)),
        text_embeddings=torch.tensor(rng.normal(size=(n_items + 1, 12)), dtype=torch.float32),
    )
    id_table = torch.tensor(rng.normal(size=(n_items + 1, 6)), dtype=torch.float32)
    method = SimpleNamespace(item_embeddings=lambda: {"id": id_table})
    return method, SimpleNamespace(text={}), prepared


def test_cli_buckets_writes_png_and_json(tmp_path):
    from padrec.cli import app

    for name, v in (("sasrec", 0.1), ("pad", 0.15)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"test": _result(v, {1: v, 2: v / 2}, {"warm": v})}))
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app, ["analyze", "buckets", str(tmp_path / "sasrec"), str(tmp_path / "pad"), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "+50.0%" in r.output
    data = json.loads((out / "buckets_sasrec_vs_pad_NDCG_10.json").read_text())
    assert data["by_bucket"]["2"]["lift"] == pytest.approx(0.5) and data["names"] == ["sasrec", "pad"]
    _assert_png(out / "buckets_sasrec_vs_pad_NDCG_10.png")
    bad = CliRunner().invoke(app, ["analyze", "buckets", str(tmp_path / "sasrec"), str(tmp_path / "nope")])
    assert bad.exit_code != 0


def test_cli_discrepancy_and_distances(tmp_path, monkeypatch):
    from padrec.cli import app
    from padrec.commands import analyze

    runs = {"a": _fake_run(seed=0), "b": _fake_run(seed=0)}
    runs["b"][0].item_embeddings = lambda: {"id": runs["a"][0].item_embeddings()["id"] * 2.0}
    for k in runs:
        (tmp_path / k).mkdir()
        (tmp_path / k / "model.json").write_text("{}")
    monkeypatch.setattr(analyze, "_load_run", lambda p: runs[Path(p).name])
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        ["analyze", "discrepancy", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--max-pairs", "300"],
    )
    assert r.exit_code == 0, r.output
    js = out / "discrepancy_a_id_vs_b_id_euclidean.json"
    data = json.loads(js.read_text())
    assert data["overall"]["tau"] == pytest.approx(1.0) and data["num_pairs"] == 300
    _assert_png(js.with_suffix(".png"))
    r = CliRunner().invoke(
        app,
        [
            "analyze",
            "discrepancy",
            str(tmp_path / "a"),
            str(tmp_path / "a"),
            "--table-b",
            "text",
            "--distance",
            "cosine",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert abs(json.loads((out / "discrepancy_a_id_vs_a_text_cosine.json").read_text())["overall"]["tau"]) < 0.2
    r = CliRunner().invoke(
        app, ["analyze", "discrepancy", str(tmp_path / "a"), str(tmp_path / "b"), "--table-a", "nope"]
    )
    assert r.exit_code != 0 and "nope" in r.output

    r = CliRunner().invoke(app, ["analyze", "distances", str(tmp_path / "a"), "--pairs", "200", "--out", str(out)])
    assert r.exit_code == 0, r.output
    js = out / "distances_a_id_vs_text_euclidean.json"
    data = json.loads(js.read_text())
    assert data["group_size"] == 20 and set(data["stats"]) == {"id", "text"}
    assert data["overlap"]["id"]["overlap"] == 0.0 and data["pair_source"] == "random"
    _assert_png(js.with_suffix(".png"))
    r = CliRunner().invoke(
        app,
        ["analyze", "distances", str(tmp_path / "a"), "--pairs", "100", "--pair-source", "cooccur", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    _no_temp_files(out)
