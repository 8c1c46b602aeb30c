"""Run directories written by padrec before the core was reshaped (commit 8735d06) still load
for `padrec evaluate` and `padrec recommend`, and give the numbers they recorded.

The fixtures were written by tests/data/legacy_runs/make_fixture.py with that old padrec.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from padrec.cli import app

FIXTURES = Path(__file__).parent / "data" / "legacy_runs"


@pytest.fixture
def legacy(tmp_path) -> Path:
    root = tmp_path / "legacy"
    shutil.copytree(FIXTURES, root)
    for f in root.rglob("*.json"):
        f.write_text(f.read_text().replace("@FIXTURE@", str(root)))
    return root


@pytest.mark.parametrize("name", ["sasrec", "pad"])
def test_legacy_run_evaluates_to_its_recorded_metrics(legacy, name, tmp_path):
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["evaluate", str(legacy / name), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recorded = json.loads((legacy / name / "results.json").read_text())["test"]["overall"]
    again = json.loads(out.read_text())["overall"]
    for metric in ("HR@5", "NDCG@5", "HR@10", "NDCG@10"):
        assert again[metric] == pytest.approx(recorded[metric], abs=1e-6), metric


@pytest.mark.parametrize("name", ["sasrec", "pad"])
def test_legacy_run_recommends_as_the_trained_model_scores(legacy, name):
    from padrec.experiment import load_run
    from padrec.serving import Recommender

    rec = Recommender.load(legacy / name)
    assert rec.item_ids is None  # written before serving files held ids: the CLI reads the dataset
    method, _, prepared = load_run(legacy / name)
    history = [int(i) for i in prepared.split.test.histories[0] if i > 0]
    with torch.no_grad():
        scores = method.score_all(torch.as_tensor(prepared.split.test.histories[:1]))[0]
    scores[0] = float("-inf")
    scores[history] = float("-inf")
    assert rec.recommend(history, k=5).items == torch.topk(scores, 5).indices.tolist()
    result = CliRunner().invoke(
        app, ["recommend", str(legacy / name), "-H", "i1", "-H", "i2", "-k", "3", "--repeat", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "top-3" in result.output


def test_a_run_saved_before_a_setting_existed_is_continued_not_refused(tmp_path, toy_dataset):
    """A run directory written before a setting was added (absent in its config.json, at its
    default now) is the same run: reused, not 'a different run'."""
    import json

    from padrec.data import compute_item_stats, make_split
    from padrec.experiment import Prepared, load_experiment_config, run_experiment

    raw = {
        "output_dir": str(tmp_path / "run"),
        "method_config": {"backbone": "gru4rec", "hidden_size": 8},
        "split": {"max_len": 8},
        "stats": {"num_buckets": 4},
        "train": {"epochs": 1, "batch_size": 64, "progress": False, "num_threads": 1, "monitor": "NDCG@5"},
        "eval": {"ks": [5]},
    }
    cfg = load_experiment_config(raw)
    prepared = Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), make_split(toy_dataset, cfg.split), None, {})
    first = run_experiment(cfg, prepared)
    saved = tmp_path / "run" / "config.json"
    old = json.loads(saved.read_text())
    del old["split"]["allow_look_ahead"], old["train"]["validate_from"]  # as written by an older padrec
    saved.write_text(json.dumps(old))
    again = run_experiment(load_experiment_config(raw), prepared)
    assert again["phases"][0]["stopped"] == "reused"
    assert again["test"]["overall"] == first["test"]["overall"]
