"""benchmarks/keep_runs.py: finished reproduce rows packed and restored byte for byte."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "keep_runs.py"


@pytest.fixture(scope="module")
def keep_runs():
    spec = importlib.util.spec_from_file_location("keep_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seed_dir(root: Path, row: str, status: str) -> Path:
    d = root / "pad-table2" / "games" / row / "seed_1"
    d.mkdir(parents=True)
    results = {"test": {"overall": {"NDCG@10": 0.04}, "per_user": {"users": [0, 1], "ranks": [3, 9]}}}
    (d / "results.json").write_text(json.dumps(results))
    (d / "status.json").write_text(json.dumps({"status": status}))
    return d


def test_pack_keeps_finished_rows_only_and_restore_writes_them_back(keep_runs, tmp_path):
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    done = _seed_dir(runs, "sasrec", "complete")
    _seed_dir(runs, "pad", "training")
    assert keep_runs.pack(runs, "pad-table2", "games", None, kept) == 1
    assert [p.parent.relative_to(kept).as_posix() for p in kept.rglob("*.gz")] == ["pad-table2/games/sasrec/seed_1"]
    original = (done / "results.json").read_bytes()
    fresh = tmp_path / "fresh"
    assert keep_runs.restore(fresh, False, kept) == 1
    assert (fresh / "pad-table2/games/sasrec/seed_1/results.json").read_bytes() == original
    assert keep_runs.restore(fresh, False, kept) == 0  # an existing results.json is left alone


def test_pack_names_a_missing_table_directory(keep_runs, tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        keep_runs.pack(tmp_path, "pad-table2", "games", None, tmp_path / "kept")
