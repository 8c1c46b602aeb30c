"""Write the legacy run directories of tests/test_legacy_runs.py with an OLD padrec.

Run with a checkout of padrec commit 8735d06 (the last one before the core was reshaped)
first on the path, from this directory:

    git worktree add /tmp/padrec-8735d06 8735d06
    PYTHONPATH=/tmp/padrec-8735d06/src python make_fixture.py

It writes a small dataset (the toy chain data of tests/conftest.py, in the user format) and
trains SASRec and PAD on it for two epochs per phase, then keeps the files `padrec evaluate`
and `padrec recommend` read, with the absolute paths replaced by ``@FIXTURE@``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from conftest import make_toy_dataset  # noqa: E402

KEEP = ["config.json", "model.json", "model.safetensors", "serving.json", "serving.safetensors", "results.json"]


def main() -> None:
    from padrec.commands.train import run_training
    from padrec.config import load_yaml

    work = Path(tempfile.mkdtemp(prefix="padrec-legacy-"))
    ds = make_toy_dataset()
    rows = [
        {"user_id": f"u{u}", "item_id": f"i{i}", "timestamp": 1000 + t}
        for u, seq in enumerate(ds.sequences)
        for t, i in enumerate(seq)
    ]
    data = work / "data"
    data.mkdir()
    pd.DataFrame(rows).to_csv(data / "inter.csv", index=False)
    pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(1, 41)], "title": [f"item {i} title" for i in range(1, 41)]}
    ).to_csv(data / "items.csv", index=False)
    np.save(data / "text.npy", np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32))
    (data / "text.json").write_text(json.dumps({f"i{i}": i - 1 for i in range(1, 41)}))
    base = f"""
data: {{format: interactions, name: toy, path: {data / "inter.csv"}, items_path: {data / "items.csv"},
        cache_dir: {work / "cache"}}}
split: {{protocol: pad, max_len: 10}}
stats: {{num_buckets: 4}}
method_config: {{hidden_size: 8, backbone_config: {{dropout: 0.1}}}}
train: {{epochs: 2, batch_size: 32, lr: 0.005, progress: false, num_threads: 1, seed: 1}}
eval: {{ks: [5, 10]}}
"""
    for name, extra in [
        ("sasrec", ""),
        (
            "pad",
            f"method: pad\ntext: {{encoder: precomputed, encoder_config: "
            f"{{path: {data / 'text.npy'}}}, cache_dir: {work / 'cache'}}}\n",
        ),
    ]:
        (work / f"{name}.yaml").write_text(f"name: {name}\noutput_dir: {work / name}\n" + base + extra)
        run_training(load_yaml(work / f"{name}.yaml"), [])
        out = HERE / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        for f in KEEP:
            src = work / name / f
            if f.endswith(".json"):
                (out / f).write_text(src.read_text().replace(str(work), "@FIXTURE@"))
            else:
                shutil.copy(src, out / f)
    shutil.copytree(data, HERE / "data", dirs_exist_ok=True)
    print(json.dumps({"written": [str(HERE / n) for n in ("sasrec", "pad", "data")]}))


if __name__ == "__main__":
    main()
