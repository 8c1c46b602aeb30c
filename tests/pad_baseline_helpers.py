"""Shared pieces of the tests of PAD's Table-2 baselines (CTRL, MAKE, DisCo, SMEM): the toy data
with random text, building a method, a short end-to-end run, the serving checks and the
shipped config check."""

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
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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


def run_toy(
    name: str, prepared: Prepared, out: Path, epochs: int = 3, seed: int = 0, **method_config: Any
) -> dict[str, Any]:
    """A short run of method ``name`` on the toy data (d 16, lr 0.01); returns the results."""
    cfg = load_experiment_config(
        {
            "name": "t",
            "output_dir": str(out),
            "method": name,
            "method_config": {"hidden_size": 16, "backbone_config": {"dropout": 0.1}, **method_config},
            "split": {"max_len": MAX_LEN},
            "stats": {"num_buckets": 4},
            "train": {
                "epochs": epochs,
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


def losses_of(res: dict[str, Any]) -> dict[str, list[float]]:
    """Every logged loss value of every phase, keyed ``phase/loss``."""
    out: dict[str, list[float]] = {}
    for phase in res["phases"]:
        for row in phase["history"]:
            for k, v in row.items():
                if k.startswith("loss_"):
                    out.setdefault(f"{phase['phase']}/{k}", []).append(v)
    return out


def assert_serving_matches(method: Method, prepared: Prepared, n: int = 6) -> Method:
    """``for_serving().score_all`` equals ``score_all`` in eval mode on n test histories, and the
    served scores are one inner product (``score_factors``); returns the served method."""
    method.eval()
    h = torch.as_tensor(prepared.split.test.histories[:n])
    with torch.no_grad():
        want = method.score_all(h)
        served = method.for_serving()
        assert torch.allclose(served.score_all(h), want, atol=1e-5)
        factors = served.score_factors()
        assert factors is not None
        assert torch.allclose(factors.query(h) @ factors.items.t(), want, atol=1e-4)
    return served


def assert_config_valid(name: str, prepared: Prepared) -> dict[str, Any]:
    """``configs/<name>.yaml`` passes ``padrec train``'s load-time checks, runs PAD's protocol
    (window 20, d 64, MiniLM titles) and names only the method's phases in ``phase_train``;
    returns its resolved method config."""
    from padrec.commands.train import build_config_dict

    cfg = load_experiment_config(build_config_dict(CONFIGS / f"{name}.yaml", {}, []))
    assert cfg.method == name and cfg.split.protocol == "pad" and cfg.split.max_len == 20
    assert cfg.method_config["hidden_size"] == 64
    assert cfg.text["encoder"] == "sentence-transformers" and cfg.text["template"] == "title"
    method = build(name, prepared, **{**cfg.method_config, "hidden_size": DIM})
    assert set(cfg.phase_train) <= {p.name for p in method.phases()}
    return cfg.method_config
