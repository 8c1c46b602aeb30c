"""The CLI end to end on a small dataset in the user format: data, train (ID and PAD),
seeds + compare, evaluate, recommend, analyze."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from padrec.cli import app

runner = CliRunner()


@pytest.fixture
def user_data(tmp_path, toy_dataset):
    rows = []
    for u, seq in enumerate(toy_dataset.sequences):
        for t, item in enumerate(seq):
            rows.append({"user_id": f"u{u}", "item_id": f"i{item}", "timestamp": 1000 + t, "rating": 5})
    pd.DataFrame(rows).to_csv(tmp_path / "inter.csv", index=False)
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(1, 41)], "title": [f"item {i} title" for i in range(1, 41)]}
    )
    items.to_csv(tmp_path / "items.csv", index=False)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "text.npy", rng.normal(size=(40, 12)).astype(np.float32))
    (tmp_path / "text.json").write_text(json.dumps({f"i{i}": i - 1 for i in range(1, 41)}))
    cfg = f"""
name: toy
data: {{format: interactions, name: toy, path: {tmp_path / "inter.csv"}, items_path: {tmp_path / "items.csv"},
        cache_dir: {tmp_path / "cache"}}}
split: {{protocol: pad, max_len: 10}}
stats: {{num_buckets: 4}}
method_config: {{hidden_size: 16, backbone_config: {{dropout: 0.1}}}}
train: {{epochs: 2, batch_size: 32, lr: 0.005, progress: false, num_threads: 1}}
eval: {{ks: [5, 10]}}
"""
    (tmp_path / "sasrec.yaml").write_text(cfg)
    pad_cfg = (
        cfg.replace("name: toy\n", "name: toy_pad\n")
        + f"""method: pad
text: {{encoder: precomputed, encoder_config: {{path: {tmp_path / "text.npy"}}}, cache_dir: {tmp_path / "cache"}}}
"""
    )
    (tmp_path / "pad.yaml").write_text(pad_cfg)
    return tmp_path


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_help_for_every_command():
    for cmd in [
        "data",
        "train",
        "evaluate",
        "compare",
        "encode",
        "analyze buckets",
        "analyze discrepancy",
        "analyze distances",
        "recommend",
    ]:
        out = invoke(*cmd.split(), "--help")
        assert "Example" in out or "example" in out, cmd


def test_train_evaluate_compare_recommend(user_data):
    d = user_data
    out = invoke("data", d / "inter.csv", "--json", d / "stats.json")
    assert json.loads((d / "stats.json").read_text())["users"] == 120
    out = invoke("train", "-c", d / "sasrec.yaml", "-o", d / "runs/sasrec", "--seeds", "1,2")
    assert "mean" in out.lower()
    summary = json.loads((d / "runs/sasrec/summary.json").read_text())
    assert summary["seeds"] == [1, 2] and "NDCG@10" in summary["aggregate"]
    out = invoke("train", "-c", d / "pad.yaml", "-o", d / "runs/pad", "--seeds", "1,2")
    res = json.loads((d / "runs/pad/seed_1/results.json").read_text())
    assert [p["phase"] for p in res["phases"]] == ["pretrain", "pretrain_llm", "align", "disentangle"]
    assert set(res["test"]["by_group"]) >= {"warm", "median", "cold"}
    out = invoke("compare", d / "runs/sasrec", d / "runs/pad", "--metric", "NDCG@10")
    assert "p" in out
    out = invoke("evaluate", d / "runs/pad/seed_1", "--history", "none", "-o", d / "eval.json")
    assert json.loads((d / "eval.json").read_text())["overall"]
    # A reloaded run scores as it did at the end of training (all of PAD's experts, gated).
    invoke("evaluate", d / "runs/pad/seed_1", "-o", d / "eval_same.json")
    again = json.loads((d / "eval_same.json").read_text())["overall"]
    assert again == pytest.approx(res["test"]["overall"], abs=1e-9)
    out = invoke(
        "recommend", d / "runs/pad/seed_1", "-H", "i1", "-H", "item 2 title", "-H", "#3", "-k", "5", "--repeat", "3"
    )
    assert "latency" in out and "top-5" in out


def test_phase_reuse_and_single_phase(user_data):
    d = user_data
    invoke("train", "-c", d / "pad.yaml", "-o", d / "runs/pad1")
    state = json.loads((d / "runs/pad1/pretrain/state.json").read_text())
    # Changing only phase-3 settings reuses phases 1 and 2.
    invoke(
        "train",
        "-c",
        d / "pad.yaml",
        "-o",
        d / "runs/pad1",
        "--set",
        "method_config.gate=learned",
        "--phase",
        "disentangle",
    )
    assert json.loads((d / "runs/pad1/pretrain/state.json").read_text()) == state
    res = json.loads((d / "runs/pad1/results.json").read_text())
    assert [p["stopped"] for p in res["phases"]][:3] == ["reused", "reused", "reused"]
    # An alignment setting retrains the alignment phase, not the phases that do not depend on it.
    invoke("train", "-c", d / "pad.yaml", "-o", d / "runs/pad1", "--set", "method_config.gamma=0.5")
    res = json.loads((d / "runs/pad1/results.json").read_text())
    assert {p["phase"]: p["stopped"] != "reused" for p in res["phases"]} == {
        "pretrain": False,
        "pretrain_llm": False,
        "align": True,
        "disentangle": True,
    }
    # Running only the first phases stops there; the model is evaluated as phase 1 left it.
    invoke("train", "-c", d / "pad.yaml", "-o", d / "runs/pad2", "--phase", "pretrain")
    res = json.loads((d / "runs/pad2/results.json").read_text())
    assert [p["phase"] for p in res["phases"]] == ["pretrain"]
    assert not (d / "runs/pad2/align").exists()


def test_bad_inputs_exit_nonzero_with_a_clear_message(user_data, tmp_path):
    d = user_data
    r = runner.invoke(app, ["train", "-c", str(d / "sasrec.yaml"), "--set", "train.lrr=0.1"])
    assert r.exit_code != 0 and "train.lrr" in r.output
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "missing.csv")])
    assert r.exit_code != 0 and "missing.csv" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert r.exit_code != 0 and "model.json" in r.output
