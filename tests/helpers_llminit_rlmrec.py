"""Shared pieces of the LLM-baseline tests (LLMInit, RLMRec-Con, RLMRec-Gen): the toy data with
random text embeddings, building a method, a short end-to-end run and the serving check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.experiment import Prepared, load_experiment_config, run_experiment
from padrec.methods import METHODS, Method, MethodContext, TrainBatch

TEXT_DIM = 12  # D
DIM = 8  # d
MAX_LEN = 10


def toy_prepared(dataset, text_dim: int = TEXT_DIM, seed: int = 0) -> Prepared:
    """The toy dataset split with window 10, 4 buckets and N(0, 1) text rows (row 0 zeros)."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(dataset.num_items + 1, text_dim, generator=g)
    text[0] = 0
    split = make_split(dataset, SplitConfig(max_len=MAX_LEN))
    return Prepared(dataset, compute_item_stats(dataset, 4), split, text, {})


def build(name: str, prepared: Prepared, seed: int = 0, **cfg: Any) -> Method:
    """Method ``name`` on the toy data with d = 8 unless ``cfg`` says otherwise."""
    torch.manual_seed(seed)
    ctx = MethodContext(prepared.dataset.num_items, MAX_LEN, prepared.stats, prepared.text_embeddings)
    return METHODS.build(name, {"hidden_size": DIM, **cfg}, context=ctx)


def batch_of(prepared: Prepared, n: int = 16) -> TrainBatch:
    """The first n training windows."""
    return TrainBatch(
        torch.as_tensor(prepared.split.train_inputs[:n]),
        torch.as_tensor(prepared.split.train_targets[:n]),
        torch.zeros(n, dtype=torch.long),
    )


def run_toy(name: str, prepared: Prepared, out: Path, seed: int = 0, **method_config: Any) -> dict[str, Any]:
    """A 3-epoch run of method ``name`` on the toy data (d 16, lr 0.01); returns the results."""
    cfg = load_experiment_config(
        {
            "name": "t",
            "output_dir": str(out),
            "method": name,
            "method_config": {"hidden_size": 16, "backbone_config": {"dropout": 0.1}, **method_config},
            "split": {"max_len": MAX_LEN},
            "stats": {"num_buckets": 4},
            "train": {
                "epochs": 3,
                "batch_size": 32,
                "lr": 0.01,
                "progress": False,
                "monitor": "NDCG@5",
                "seed": seed,
            },
            "eval": {"ks": [5]},
        }
    )
    return run_experiment(cfg, prepared)


def loss_history(res: dict[str, Any]) -> list[dict[str, float]]:
    """The per-epoch loss rows of a single-phase run."""
    return [{k: v for k, v in row.items() if k.startswith("loss_")} for row in res["phases"][0]["history"]]


def assert_serving_matches(method: Method, prepared: Prepared, n: int = 6) -> Method:
    """``for_serving().score_all`` equals ``score_all`` in eval mode on n test histories."""
    method.eval()
    h = torch.as_tensor(prepared.split.test.histories[:n])
    with torch.no_grad():
        want = method.score_all(h)
        served = method.for_serving()
        got = served.score_all(h)
    assert got.shape == (n, prepared.dataset.num_items + 1)
    assert torch.allclose(got, want, atol=1e-5)
    return served
