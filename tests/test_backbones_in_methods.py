"""Every registered backbone trains inside every built-in method (the plain sequential
method and PAD), on the training examples its capabilities call for."""

from __future__ import annotations

import pytest
import torch

from padrec.data import compute_item_stats, make_split
from padrec.experiment import Prepared, load_experiment_config, run_experiment
from padrec.models.backbones import BACKBONES


@pytest.mark.parametrize("method", ["sequential", "pad"])
@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_backbone_trains_in_method(tmp_path, toy_dataset, method, backbone):
    cfg = load_experiment_config(
        {
            "output_dir": str(tmp_path / "run"),
            "method": method,
            "method_config": {"backbone": backbone, "hidden_size": 16},
            "split": {"max_len": 8},
            "stats": {"num_buckets": 4},
            "train": {"epochs": 1, "batch_size": 64, "lr": 0.01, "progress": False, "monitor": "NDCG@5"},
            "eval": {"ks": [5]},
        }
    )
    causal = BACKBONES.get(backbone).causal
    assert cfg.split.train_examples == ("shifted" if causal else "prefixes")
    split = make_split(toy_dataset, cfg.split)
    g = torch.Generator().manual_seed(0)
    text = torch.randn(toy_dataset.num_items + 1, 12, generator=g)
    text[0] = 0
    prepared = Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, text, {})
    res = run_experiment(cfg, prepared)
    for phase in res["phases"]:
        losses = [row[k] for row in phase["history"] for k in row if k.startswith("loss_")]
        assert all(torch.isfinite(torch.tensor(losses))), (phase["phase"], losses)
    assert res["test"]["overall"]["NDCG@5"] > 0.05  # above random (5/40 hits spread over ranks)


def test_look_ahead_is_refused_unless_asked_for_explicitly(caplog):
    """A non-causal backbone on shifted windows would see its targets: refused, except with
    ``split.allow_look_ahead`` (to reproduce releases that train so), which warns."""
    from padrec.config import ConfigError

    base = {"method": "sequential", "method_config": {"backbone": "fmlprec"}}
    with pytest.raises(ConfigError, match="allow_look_ahead"):
        load_experiment_config({**base, "split": {"train_examples": "shifted"}})
    with caplog.at_level("WARNING", logger="padrec"):
        cfg = load_experiment_config({**base, "split": {"train_examples": "shifted", "allow_look_ahead": True}})
    assert cfg.split.train_examples == "shifted" and cfg.split.allow_look_ahead
    assert "sees the items it predicts" in caplog.text
    cfg = load_experiment_config({**base, "split": {"allow_look_ahead": True}})
    assert cfg.split.train_examples == "prefixes"  # auto still picks the sound examples
