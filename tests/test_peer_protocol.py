"""The peer runners' FAERec evaluator (benchmarks/peers/faerec_protocol.py) ranks exactly as
padrec's evaluator with ``history_handling: zero``: same per-user ranks and metrics on small random
inputs with ties, NaN / +-inf scores, seen items and repeated targets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, PEERS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fp = _load("faerec_protocol")
check = _load("check_protocol")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_ranks_and_metrics_as_padrec(seed: int) -> None:
    scores, data = check.synthetic_case(seed, users=120, items=25)
    r_padrec, m_padrec = check.padrec_ranks(scores, data, batch_size=31)
    r_peer, m_peer = check.peer_ranks(scores, data, batch_size=23)
    np.testing.assert_array_equal(r_padrec, r_peer)
    for k in check.KS:
        assert m_peer[f"HR@{k}"] == m_padrec[f"HR@{k}"]
        assert m_peer[f"NDCG@{k}"] == m_padrec[f"NDCG@{k}"]


def test_seen_items_are_zeroed_not_removed() -> None:
    # Items 1..4; target 3. Scores: item 1 = -1 (seen -> 0), item 2 = 0.5, item 3 = -0.5, item 4 = -2.
    scores = torch.tensor([[9.0, -1.0, 0.5, -0.5, -2.0]])
    indptr = np.array([0, 1])
    assert fp.rank_targets(scores, np.array([3]), indptr, np.array([1])).item() == 2  # items 2 and 1 (0 > -0.5)
    assert fp.rank_targets(scores, np.array([3]), np.array([0, 0]), np.zeros(0, np.int64)).item() == 1
    # A seen target is zeroed too and ties with the zeroed item 1 (smaller id first).
    assert fp.rank_targets(scores, np.array([3]), np.array([0, 2]), np.array([1, 3])).item() == 2
    # Padding (column 0) never ranks; an unrankable target is a miss (rank N).
    nan_target = torch.tensor([[9.0, 0.0, float("nan"), 1.0, 2.0]])
    assert fp.rank_targets(nan_target, np.array([2]), indptr, np.array([1])).item() == 4


def test_zero_handling_changes_ranks_on_the_synthetic_case() -> None:
    scores, data = check.synthetic_case(0, users=120, items=25)
    with_seen = fp.rank_targets(scores, data.targets, data.seen_indptr, data.seen_items)
    empty = np.zeros(len(data) + 1, np.int64)
    without = fp.rank_targets(scores, data.targets, empty, np.zeros(0, np.int64))
    assert (with_seen != without).any()


def test_metrics_from_ranks() -> None:
    m = fp.metrics_from_ranks(np.array([0, 1, 9, 10, 57289]), ks=(10,))
    assert m["HR@10"] == pytest.approx(3 / 5)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)


def _eval(v20: float, t10: float) -> dict:
    return {"metrics": {"NDCG@20": v20, "HR@20": 0.0, "HR@10": 0.0, "NDCG@10": t10}, "score_seconds": 0.0}


def test_run_log_target_best_epoch_and_stopping(tmp_path: Path, capsys) -> None:
    rc = _load("runner_common")
    out = tmp_path / "peer.json"
    args = rc.parse_args("x", ["--out", str(out), "--patience", "2", "--max-minutes", "1", "--epochs", "9"])
    log = rc.RunLog(args, "tool", {}, {})
    # epoch: (train seconds, valid NDCG@20, test NDCG@10)
    steps = [(10.0, 0.02, 0.015), (10.0, 0.03, 0.019), (10.0, 0.03, 0.021), (10.0, 0.025, 0.020)]
    stops = [log.end_epoch(e + 1, s, 1.0, 5, _eval(v, t), _eval(0, t), 0.5) for e, (s, v, t) in enumerate(steps)]
    assert stops == [False, False, False, True]
    assert log.stop_reason.startswith("patience")
    import json

    d = json.loads(out.read_text())  # rewritten after every epoch
    assert d["seconds_to_target"] == 20.0 and d["epoch_reaching_target"] == 2
    assert d["best_valid_epoch"] == 2 and d["best_valid_test"]["test_NDCG@10"] == 0.019
    assert d["max_test_NDCG@10"] == 0.021 and len(d["per_epoch"]) == 4
    # The cap: 50 s trained + 25 s/epoch > 60 s stops before the third epoch.
    log2 = rc.RunLog(rc.parse_args("x", ["--out", str(out), "--max-minutes", "1"]), "tool", {}, {})
    assert not log2.end_epoch(1, 25.0, 1.0, 5, _eval(0.01, 0.0), _eval(0, 0.0), 0.1)
    assert log2.end_epoch(2, 25.0, 1.0, 5, _eval(0.02, 0.0), _eval(0, 0.0), 0.1)
    assert log2.stop_reason.startswith("cap")


collect = _load("collect_padrec")

TIME_LOG = """\tCommand being timed: "padrec train -c x.yaml"
\tElapsed (wall clock) time (h:mm:ss or m:ss): 8:59.70
\tMaximum resident set size (kbytes): 2818516
"""


def test_collect_padrec_parses_time_log() -> None:
    parsed = collect.parse_time_log(TIME_LOG)
    assert parsed["wall_seconds"] == pytest.approx(539.7)
    assert parsed["max_rss_mb"] == pytest.approx(2818516 / 1024)
    assert (
        collect.parse_time_log(
            "\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03\n\tMaximum resident set size (kbytes): 1\n"
        )["wall_seconds"]
        == 3723.0
    )
    with pytest.raises(SystemExit, match="log.txt"):
        collect.parse_time_log("no summary here", "log.txt")


def test_collect_padrec_drops_per_user_arrays_only() -> None:
    doc = {"test": {"overall": {"HR@10": 0.04}, "ranks": list(range(50))}, "ks": [5, 10, 20]}
    stripped = collect.strip_long_lists(doc, max_list=10)
    assert stripped == {"test": {"overall": {"HR@10": 0.04}}, "ks": [5, 10, 20]}
