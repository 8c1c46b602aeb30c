"""Malformed inputs and faults against the CLI: configs, flags, run directories, checkpoints,
interruptions. Each case asserts a non-zero exit, a message naming the file, flag or key and
what was expected, no traceback, and no partial artifact."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_toy_dataset
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from padrec.cli import app

runner = CliRunner()


def write_data(root: Path) -> dict[str, Path]:
    ds = make_toy_dataset()
    rows = [
        {"user_id": f"u{u}", "item_id": f"i{i}", "timestamp": 1000 + t}
        for u, seq in enumerate(ds.sequences)
        for t, i in enumerate(seq)
    ]
    pd.DataFrame(rows).to_csv(root / "inter.csv", index=False)
    pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(1, 41)], "title": [f"item {i}, title" for i in range(1, 41)]}
    ).to_csv(root / "items.csv", index=False)
    base = f"""
data: {{format: interactions, name: toy, path: {root / "inter.csv"}, items_path: {root / "items.csv"},
        cache_dir: {root / "cache"}}}
split: {{protocol: pad, max_len: 10}}
stats: {{num_buckets: 4}}
method_config: {{hidden_size: 8, backbone: gru4rec}}
train: {{epochs: 2, batch_size: 32, lr: 0.01, progress: false, num_threads: 1}}
eval: {{ks: [5, 10]}}
"""
    (root / "toy.yaml").write_text(base)
    (root / "other.yaml").write_text(
        base.replace("name: toy,", "name: toy2,").replace(str(root / "inter.csv"), str(root / "inter2.csv"))
    )
    shutil.copy(root / "inter.csv", root / "inter2.csv")
    return {"config": root / "toy.yaml", "other": root / "other.yaml"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    paths = write_data(root)
    for name, cfg in (("run", paths["config"]), ("run2", paths["other"])):
        r = runner.invoke(app, ["train", "-c", str(cfg), "-o", str(root / name)], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    return {"root": root, "run": root / "run", "run2": root / "run2", **paths}


def fails(args, *needles: str, code: int = 2) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    out = r.output
    assert r.exit_code == code, (r.exit_code, out, r.exception)
    assert isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in out
    flat = " ".join(out.split())
    for needle in needles:
        assert needle in flat, (needle, out)
    return out


def copy_run(trained, tmp_path, name="run") -> Path:
    dst = tmp_path / name
    shutil.copytree(trained[name], dst)
    return dst


# --- configs and flags of `padrec train` (nothing may be written) --------------------------
TRAIN_CASES = [
    (["--batch-size", "0"], ["train.batch_size must be >= 1"]),
    (["--hidden-size", "0"], ["method_config.hidden_size must be between 1 and 16384"]),
    (["--hidden-size", "100000000"], ["method_config.hidden_size must be between 1 and 16384", "100000000"]),
    (["--loss", "bce", "--set", "method_config.num_negatives=100000000"], ["num_negatives must be between 1 and"]),
    (["--seeds", "1,1"], ["--seeds", "given more than once"]),
    (["--max-len", "1000000000"], ["split.max_len = 1000000000 would need", "longest sequence"]),
    (["--seeds", ""], ["--seeds", "expected comma-separated integers"]),
    (["--patience", "-1"], ["train.patience must be >= 1"]),
    (["--epochs", "0"], ["train.epochs must be >= 1"]),
    (["--lr", "-1"], ["train.lr must be > 0"]),
    (["--set", "stats.num_buckets=0"], ["stats.num_buckets must be >= 1"]),
    (["--set", "stats.head_fraction=5"], ["stats.head_fraction must be in (0, 1)"]),
    (["--set", "stats.head_basis=trian"], ["stats.head_basis", "['train', 'full']", "'trian'"]),
    (["--protocol", "xyz"], ["split.protocol", "['pad', 'faerec']", "'xyz'"]),
    (["--set", "train.monitor=HR@50"], ["train.monitor", "K=50", "[5, 10]"]),
    (["--set", "train.monitor=Recall@10"], ["train.monitor", "expected HR@K"]),
    (["--set", "=5"], ["--set expects key.path=value", "'=5'"]),
    (["--set", "train..lr=1"], ["--set expects key.path=value"]),
    (["--set", "train.precision=fp16"], ["train.precision", "['fp32', 'bf16', 'auto']"]),
    (["--set", "method_config.backbone_config.hidden_size=32"], ["backbone_config.hidden_size = 32 contradicts"]),
    (["--set", "method_config.backbone_config.num_layer=2"], ["num_layer"]),
    (
        ["--backbone", "nope"],
        [
            "unknown backbone 'nope'",
            "known: caser, fmlprec, gmlp, gmlp_bidirectional, gru4rec, lightsans, lrurec, narm, sasrec",
        ],
    ),
    (["--method", "nope"], ["unknown method 'nope'"]),
    (
        ["--method", "pad", "--set", "method_config.alignment=mmd_gausian"],
        ["alignment", "mmd_gaussian", "'mmd_gausian'"],
    ),
    (["--set", "train.device=gpu0"], ["'gpu0' is not a valid torch device"]),
    (["--set", "train.device=cuda:99"], ["cuda:99"]),
    (["--set", "eval.main_metric=NDCG@10"], ["train.monitor"]),
    (["--set", "phase_train.train.lrr=1"], ["phase_train.train", "lrr"]),
    (["--set", "phase_train.nophase.lr=1"], ["phase_train: unknown phase(s) ['nophase']"]),
    (["--phase", "nophase"], ["phases: unknown phase(s) ['nophase']"]),
    (["--seeds", "1,a"], ["--seeds", "'1,a'"]),
    (["--set", "split.train_examples=sideways"], ["split.train_examples"]),
    (["--set", "method_config.items=nope"], ["unknown item representation 'nope'"]),
]


@pytest.mark.parametrize("flags,needles", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_bad_training_settings(trained, tmp_path, flags, needles):
    out_dir = tmp_path / "never"
    fails(["train", "-c", trained["config"], "-o", out_dir, *flags], *needles)
    assert not out_dir.exists()  # refused before anything was written


def test_missing_and_invalid_config_files(tmp_path):
    fails(["train", "-c", tmp_path / "missing.yaml"], "missing.yaml", "cannot read config file")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [1, 2\n")
    fails(["train", "-c", bad], "bad.yaml", "not valid YAML")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    fails(["train", "-c", listy], "list.yaml", "expected a mapping")


def test_output_onto_a_file(trained, tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    out = fails(["train", "-c", trained["config"], "-o", target], str(target))
    assert target.read_text() == "x"
    assert out


def test_a_directory_holding_a_different_run_is_refused(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    before = (run / "config.json").read_text()
    fails(["train", "-c", trained["other"], "-o", run], "holds a different run", "data.path")
    assert (run / "config.json").read_text() == before


# --- evaluate --------------------------------------------------------------------------
def test_evaluate_with_cut_offs_without_the_monitored_k(trained, tmp_path):
    r = runner.invoke(app, ["evaluate", str(trained["run"]), "--ks", "20", "-o", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert "NDCG@20" in json.loads((tmp_path / "e.json").read_text())["overall"]


@pytest.mark.parametrize(
    "flags,needles",
    [
        (["--ks", "0"], ["--ks", "positive"]),
        (["--ks", "5,x"], ["--ks", "comma-separated integers"]),
        (["--ks", "41"], ["--ks", "catalogue size 40"]),
        (["--history", "bogus"], ["--history", "['remove', 'zero', 'none']", "'bogus'"]),
        (["--split", "train"], ["--split must be test or valid"]),
        (["--device", "cuda:99"], ["cuda:99"]),
    ],
)
def test_bad_evaluate_flags(trained, flags, needles):
    fails(["evaluate", trained["run"], *flags], *needles)


def test_evaluate_output_onto_a_directory_or_under_a_file(trained, tmp_path):
    fails(["evaluate", trained["run"], "-o", tmp_path], "is a directory")
    f = tmp_path / "f"
    f.write_text("x")
    fails(["evaluate", trained["run"], "-o", f / "out.json"], "is a file, not a directory")
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("which", ["model.safetensors", "serving.safetensors"])
@pytest.mark.parametrize("damage", ["truncated", "foreign", "empty"])
def test_damaged_checkpoints(trained, tmp_path, which, damage):
    run = copy_run(trained, tmp_path)
    path = run / which
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "foreign": b"PK\x03\x04not safetensors" * 50, "empty": b""}[damage]
    )
    cmd = ["evaluate", run] if which == "model.safetensors" else ["recommend", run, "-H", "i1", "--repeat", "0"]
    fails(cmd, which, "not a readable safetensors file")


def test_nan_weights_are_refused(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    tensors = load_file(str(run / "model.safetensors"))
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(run / "model.safetensors"))
    fails(["evaluate", run], "model.safetensors", "NaN or infinite")


def test_truncated_and_edited_model_json(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    text = (run / "model.json").read_text()
    (run / "model.json").write_text(text[: len(text) // 2])
    fails(["evaluate", run], "model.json", "not valid JSON", "line")
    meta = json.loads(text)
    meta["experiment"]["method_config"]["hidden_size"] = 12
    (run / "model.json").write_text(json.dumps(meta))
    fails(["evaluate", run], "model.safetensors", "model.json describes")


def test_edited_run_metadata(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    meta = json.loads((run / "model.json").read_text())
    meta["phase"] = "nope"
    (run / "model.json").write_text(json.dumps(meta))
    fails(["evaluate", run], "model.json", "'phase' is 'nope'", "phases: ['train']")
    serving = json.loads((run / "serving.json").read_text())
    serving["item_ids"] = serving["item_ids"][:5]
    (run / "serving.json").write_text(json.dumps(serving))
    fails(["recommend", run, "-H", "i1"], "serving.json", "'item_ids' has 5 entries", "41")
    (run / "serving.json").write_text("{")
    fails(["recommend", run, "-H", "i1"], "serving.json", "not valid JSON")


def test_damaged_phase_state_names_the_file(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    (run / "train" / "state.json").write_text("{")
    fails(["train", "-c", trained["config"], "-o", run], "train/state.json", "not valid JSON")


def test_evaluate_a_directory_that_is_not_a_run(tmp_path):
    fails(["evaluate", tmp_path], "no model.json")


# --- recommend --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags,needles",
    [
        (["-H", "i1", "-k", "-3"], ["-k must be between 1 and 39", "-3"]),
        (["-H", "i1", "-k", "40"], ["-k must be between 1 and 39", "40"]),
        (["-H", "i1", "-H", "i2", "-k", "39"], ["-k must be between 1 and 38"]),
        (["-H", "no such thing"], ["'no such thing' matches no item id or title"]),
        (["-H", "item"], ["matches 40 titles", "be more specific"]),
        ([], ["the history is empty"]),
        (["-H", "i1", "--device", "cuda:99"], ["cuda:99"]),
        (["--history-file", "/nonexistent/h.txt"], ["--history-file", "/nonexistent/h.txt"]),
        (["-H", "i1", "--repeat", "-1"], ["--repeat must be >= 0"]),
    ],
)
def test_bad_recommend_requests(trained, flags, needles):
    fails(["recommend", trained["run"], *flags], *needles)


def test_titles_with_commas_are_one_history_item(trained, tmp_path):
    r = runner.invoke(app, ["recommend", str(trained["run"]), "-H", "item 3, title", "-k", "3", "--repeat", "0"])
    assert r.exit_code == 0, r.output
    assert "history (1 items)" in r.output
    hist = tmp_path / "h.txt"
    hist.write_text("i1\nitem 2, title\n\n")
    r = runner.invoke(app, ["recommend", str(trained["run"]), "--history-file", str(hist), "--repeat", "0"])
    assert r.exit_code == 0 and "history (2 items)" in r.output


# --- compare ----------------------------------------------------------------------------
def test_bad_comparisons(trained, tmp_path):
    fails(["compare", trained["run"], trained["run2"]], "different datasets")
    fails(["compare", trained["run"], trained["run"], "--metric", "HR@50"], "--metric HR@50", "reports")
    fails(["compare", trained["run"], tmp_path], "neither summary.json nor results.json")


# --- interruptions and partial output --------------------------------------------------
def test_a_failure_during_the_final_writes_leaves_a_run_marked_incomplete(trained, tmp_path, monkeypatch):
    import padrec.experiment.run as run_module

    run = tmp_path / "run"

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(run_module, "export_serving", broken)
    fails(["train", "-c", trained["config"], "-o", run], "disk full")
    assert json.loads((run / "status.json").read_text())["status"] == "training"
    fails(["recommend", run, "-H", "i1"], "did not finish", "padrec train")
    fails(["evaluate", run], "did not finish")
    (run / ".serving.json.abc123.tmp").write_text("{")  # what a killed writer leaves
    monkeypatch.undo()
    r = runner.invoke(app, ["train", "-c", str(trained["config"]), "-o", str(run)], catch_exceptions=False)
    assert r.exit_code == 0 and "reused" in r.output
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert not list(run.rglob("*.tmp"))
    r = runner.invoke(app, ["recommend", str(run), "-H", "i1", "--repeat", "0"])
    assert r.exit_code == 0, r.output


def test_kill_9_during_training_resumes_to_the_uninterrupted_numbers(trained, tmp_path):
    cfg = tmp_path / "long.yaml"
    cfg.write_text(
        trained["config"].read_text().replace("epochs: 2", "epochs: 6").replace("backbone: gru4rec", "backbone: sasrec")
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(
        [sys.executable, "-m", "padrec", "train", "-c", str(cfg), "-o", str(tmp_path / "ref")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "padrec", "train", "-c", str(cfg), "-o", str(cut)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    state_path = cut / "train" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            if len(json.loads(state_path.read_text())["history"]) >= 2:
                break
        except (OSError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not json.loads(state_path.read_text())["finished"]
    fails(["recommend", cut, "-H", "i1"], "did not finish")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming at epoch" in again.stdout
    a = json.loads((tmp_path / "ref" / "results.json").read_text())
    b = json.loads((cut / "results.json").read_text())
    assert [round(h["loss_rec"], 6) for h in a["phases"][0]["history"]] == [
        round(h["loss_rec"], 6) for h in b["phases"][0]["history"]
    ]
    assert b["test"]["overall"] == pytest.approx(a["test"]["overall"], abs=1e-9)


def test_interrupt_is_reported_not_traced(trained, tmp_path, monkeypatch):
    import padrec.training.trainer as trainer_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "_epoch", interrupted)
    fails(["train", "-c", trained["config"], "-o", tmp_path / "run"], "interrupted", "run again to resume", code=130)


def test_run_names_follow_method_and_backbone(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["train", "-c", str(trained["config"]), "--backbone", "caser", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / "caser" / "results.json").exists()
    assert json.loads((tmp_path / "runs" / "caser" / "results.json").read_text())["name"] == "caser"


def test_run_files_are_readable_by_others(trained):
    for f in ("config.json", "model.safetensors", "results.json", "serving.json"):
        assert (trained["run"] / f).stat().st_mode & 0o044 == 0o044, f


def test_kill_9_inside_the_final_write_is_recovered(trained, tmp_path):
    """SIGKILL at the moment serving.json's temporary file is renamed into place (the issue's
    `.serving.json.*.tmp` left forever): the run stays marked incomplete, `recommend` says so,
    and the same `padrec train` completes it and removes the temporary."""
    run = tmp_path / "run"
    killer = (
        "import os, signal, sys\n"
        "import padrec.io as io\n"
        "real = io.os.replace\n"
        "def replace(src, dst):\n"
        "    if str(dst).endswith('serving.json'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(src, dst)\n"
        "io.os.replace = replace\n"
        "from padrec.cli import main\n"
        "sys.argv = ['padrec'] + sys.argv[1:]\n"
        "main()\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "-c", str(trained["config"]), "-o", str(run)]
    done = subprocess.run([sys.executable, "-c", killer, *args], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert list(run.glob(".serving.json.*.tmp")), "the kill should have left serving.json's temporary"
    assert json.loads((run / "status.json").read_text())["status"] == "training"
    fails(["recommend", run, "-H", "i1"], "did not finish", "padrec train")
    again = subprocess.run(
        [sys.executable, "-m", "padrec", *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "reused" in again.stdout
    assert not list(run.rglob("*.tmp"))
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    r = runner.invoke(app, ["recommend", str(run), "-H", "i1", "--repeat", "0"])
    assert r.exit_code == 0, r.output
