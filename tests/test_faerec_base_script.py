"""benchmarks/faerec_base.py: rows of concurrent invocations merge, and each row's tolerance."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("faerec_base", ROOT / "benchmarks" / "faerec_base.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_saves_merge_rows_of_separate_invocations(tmp_path: Path, monkeypatch) -> None:
    fb = _script()
    monkeypatch.setattr(fb, "RESULTS", tmp_path / "faerec_base.json")
    fb.save_results({"rows": {"sasrec_yelp": {"HR@10": 0.02}}, "load_average_at_start": {"t0": ["1.0"]}})
    # a second invocation that loaded the file before the first row was written
    fb.save_results({"rows": {"cities_yelp": {"HR@10": 0.03}}, "load_average_at_start": {"t1": ["2.0"]}})
    doc = json.loads((tmp_path / "faerec_base.json").read_text())
    assert set(doc["rows"]) == {"sasrec_yelp", "cities_yelp"}
    assert set(doc["load_average_at_start"]) == {"t0", "t1"}
    assert not (tmp_path / "faerec_base.json.tmp").exists()


def test_every_row_has_a_config_and_published_figures() -> None:
    fb = _script()
    for row in fb.ROWS:
        assert (ROOT / "configs" / f"{row}_faerec_base.yaml").exists(), row
        for data in fb.DATASETS:
            assert (row, data) in fb.PUBLISHED, (row, data)
    assert fb.tolerance("sasrec") == 0.05
    assert fb.tolerance("melt") == 0.10


def test_summarize_a_two_phase_run(tmp_path: Path) -> None:
    fb = _script()
    metrics = {"HR@10": 0.0262, "NDCG@10": 0.0110}
    test = {
        "overall": metrics,
        "head_tail": {"tail": {"HR@10": 0.005, "NDCG@10": 0.002, "users": 100}},
        "coverage": {"Coverage@10": 0.7, "TailCoverage@10": 0.6},
        "num_users": 1000,
    }
    phases = [
        {
            "phase": "pretrain",
            "history": [{"epoch": 202, "valid_NDCG@20": 0.01}],
            "best_epoch": 205,
            "epochs_run": 215,
            "stopped": "patience",
            "seconds_per_epoch": 19.0,
            "train_seconds": 4085.0,
        },
        {
            "phase": "infer",
            "history": [{"epoch": 1, "valid_NDCG@20": 0.01}],
            "best_epoch": 3,
            "epochs_run": 8,
            "stopped": "patience",
            "seconds_per_epoch": 40.0,
            "train_seconds": 320.0,
        },
    ]
    (tmp_path / "results.json").write_text(json.dumps({"test": test, "phases": phases, "peak_rss_mb": 1500.0}))
    (tmp_path / "config.json").write_text(json.dumps({"train": {"patience": 10, "epochs": 500}}))
    row = fb.summarize_run(tmp_path, "cities", "yelp", "", [])
    assert row["phases"]["pretrain"]["epochs_run"] == 215 and row["phases"]["infer"]["best_epoch"] == 3
    assert row["published"]["HR@10"] == 0.0240
    assert abs(row["ratio"]["HR@10"] - 0.0262 / 0.0240) < 1e-12
    assert row["within_tolerance"]  # 1.09 and 0.99: inside ±10%
