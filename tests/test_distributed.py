"""Data-parallel training: `torchrun --nproc_per_node 2 -m padrec train` with gloo on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch.distributed as dist
from conftest import make_toy_dataset


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no torch.distributed with gloo",
)
def test_two_cpu_processes_train_one_run_directory(tmp_path):
    run = tmp_path / "ddp"
    cmd = _ddp_config(tmp_path, run, 4, backbone="gru4rec", batch_size=32)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in (
        "config.json",
        "model.json",
        "model.safetensors",
        "serving.safetensors",
        "serving.json",
        "results.json",
        "train/state.json",
        "train/best.safetensors",
    ):
        assert (run / name).is_file(), name
    assert not list(run.rglob("*.tmp")) and not list((run / "train").glob("last*"))
    state = json.loads((run / "train" / "state.json").read_text())
    assert state["finished"] and len(state["history"]) == 4
    losses = [row["loss_rec"] for row in state["history"]]
    assert losses[-1] < losses[0]
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["overall"]["NDCG@10"] > 0.05  # well above random (1/40 items) on the toy chains
    assert done.stdout.count("ddp — test") == 1  # rank 0 alone reports


def _ddp_config(tmp_path, run, epochs: int, backbone: str = "sasrec", batch_size: int = 16) -> list[str]:
    """Write the toy data (once) and a config training ``backbone`` into ``run``; returns the
    torchrun command line for 2 CPU processes."""
    rows_path = tmp_path / "inter.csv"
    if not rows_path.exists():
        ds = make_toy_dataset()
        rows = [
            {"user_id": f"u{u}", "item_id": f"i{i}", "timestamp": 1000 + t}
            for u, seq in enumerate(ds.sequences)
            for t, i in enumerate(seq)
        ]
        pd.DataFrame(rows).to_csv(rows_path, index=False)
    cfg = tmp_path / f"{run.name}.yaml"
    cfg.write_text(f"""
name: {run.name}
output_dir: {run}
data: {{format: interactions, name: toy, path: {rows_path}, cache_dir: {tmp_path / "cache"}}}
split: {{protocol: pad, max_len: 10}}
stats: {{num_buckets: 4}}
method_config: {{backbone: {backbone}, hidden_size: 16, backbone_config: {{dropout: 0.3}}}}
train: {{epochs: {epochs}, batch_size: {batch_size}, lr: 0.01, progress: false, device: cpu, patience: 100}}
eval: {{ks: [5, 10]}}
""")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "padrec",
        "train",
        "-c",
        str(cfg),
    ]


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no torch.distributed with gloo",
)
def test_killed_data_parallel_run_resumes_to_the_uninterrupted_numbers(tmp_path):
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref_run, cut_run = tmp_path / "ref", tmp_path / "cut"
    done = subprocess.run(_ddp_config(tmp_path, ref_run, 8), capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    cmd = _ddp_config(tmp_path, cut_run, 8)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    state_path = cut_run / "train" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill -9 every process once two epochs are saved
        if state_path.exists():
            try:
                if len(json.loads(state_path.read_text())["history"]) >= 2:
                    break
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = json.loads(state_path.read_text())
    assert not state["finished"], "the run finished before it could be interrupted"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ref = json.loads((ref_run / "train" / "state.json").read_text())["history"]
    got = json.loads(state_path.read_text())["history"]
    assert [round(r["loss_rec"], 5) for r in got] == [round(r["loss_rec"], 5) for r in ref]
    assert [r["valid_NDCG@10"] for r in got] == pytest.approx([r["valid_NDCG@10"] for r in ref], abs=1e-9)
    a = json.loads((ref_run / "results.json").read_text())["test"]["overall"]
    b = json.loads((cut_run / "results.json").read_text())["test"]["overall"]
    assert b == pytest.approx(a, abs=1e-9)
