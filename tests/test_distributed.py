"""Data-parallel training: `torchrun --nproc_per_node 2 -m padrec train` with gloo on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch.distributed as dist


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no torch.distributed with gloo",
)
def test_two_cpu_processes_train_one_run_directory(tmp_path, toy_dataset):
    rows = [
        {"user_id": f"u{u}", "item_id": f"i{i}", "timestamp": 1000 + t}
        for u, seq in enumerate(toy_dataset.sequences)
        for t, i in enumerate(seq)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "inter.csv", index=False)
    run = tmp_path / "run"
    (tmp_path / "ddp.yaml").write_text(f"""
name: ddp
output_dir: {run}
data: {{format: interactions, name: toy, path: {tmp_path / "inter.csv"}, cache_dir: {tmp_path / "cache"}}}
split: {{protocol: pad, max_len: 10}}
stats: {{num_buckets: 4}}
method_config: {{backbone: gru4rec, hidden_size: 16}}
train: {{epochs: 4, batch_size: 32, lr: 0.01, progress: false, device: cpu, patience: 10}}
eval: {{ks: [5, 10]}}
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
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
        str(tmp_path / "ddp.yaml"),
    ]
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
    assert not list(run.rglob("*.tmp")) and not (run / "train" / "last.safetensors").exists()
    state = json.loads((run / "train" / "state.json").read_text())
    assert state["finished"] and len(state["history"]) == 4
    losses = [row["loss_rec"] for row in state["history"]]
    assert losses[-1] < losses[0]
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["overall"]["NDCG@10"] > 0.05  # well above random (1/40 items) on the toy chains
    assert done.stdout.count("ddp — test") == 1  # rank 0 alone reports
