"""benchmarks/memory_table.py finds every recorded peak memory figure in result JSON files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "memory_table.py"


def _load():
    spec = importlib.util.spec_from_file_location("memory_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["memory_table"] = module
    spec.loader.exec_module(module)
    return module


mt = _load()


def test_peaks_nested_lists_and_units() -> None:
    doc = {
        "runs": {"pad": {"peak_rss_mb": [100.0, 250.5]}, "sasrec": {"peak_rss_mb": [90.0]}},
        "per_epoch": [{"rss_mb": 80}, {"rss_mb": 120, "loss": 3.0}],
        "peak_rss_gib": {"train": 2.0, "load": 0.5},
        "not_memory": 99999,
        "flag": True,
    }
    assert sorted(mt.peaks(doc)) == [80, 90, 100, 120, 250.5, 512, 2048]


def test_table_marks_files_without_memory(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"peak_rss_mb": 1500.25}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"NDCG@10": 0.04}))
    rows = mt.table(tmp_path)
    assert rows == [
        {"file": "a.json", "rows": 1, "peak_mib": 1500.2},
        {"file": "sub/b.json", "rows": 0, "peak_mib": None},
    ]


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SystemExit, match="broken.json"):
        mt.table(tmp_path)
