"""The data side of an experiment: dataset, split, item statistics and, for methods that
read item text, the text embeddings; and building the method on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from padrec.config import from_dict
from padrec.data import compute_item_stats, make_split
from padrec.data.loading import load_dataset
from padrec.data.stats import ItemStats
from padrec.experiment.config import ExperimentConfig
from padrec.methods import METHODS, Method, MethodContext
from padrec.training.distributed import Distributed


@dataclass
class Prepared:
    """Data side of an experiment, built once and shared by seeds."""

    dataset: Any
    stats: ItemStats
    split: Any
    text_embeddings: torch.Tensor | None
    text_meta: dict[str, Any]


def prepare(cfg: ExperimentConfig, world: Distributed | None = None) -> Prepared:
    """Load the dataset, compute item statistics and split; encode text if the method needs it.

    Data-parallel processes prepare one after the other (rank 0 first, filling the caches the
    others then read), so no two processes write one cache entry at once.
    """
    world = world or Distributed()
    if world.enabled and not world.is_main:
        world.barrier()
    prepared = _prepare(cfg)
    if world.enabled and world.is_main:
        world.barrier()
    return prepared


def _prepare(cfg: ExperimentConfig) -> Prepared:
    dataset = load_dataset(cfg.data)
    split = make_split(dataset, cfg.split)
    stats = compute_item_stats(dataset, cfg.stats.num_buckets, cfg.stats.head_fraction, cfg.stats.head_basis)
    text, meta = None, {}
    if METHODS.get(cfg.method).needs_text(cfg.method_settings()):
        from padrec.text import TextConfig, build_text_embeddings

        tcfg = from_dict(TextConfig, cfg.text, where="text")
        emb = build_text_embeddings(dataset, tcfg, progress=cfg.train.progress)
        text = emb.matrix
        meta = {
            "encoder": emb.encoder,
            "identity": emb.identity,
            "template": emb.template,
            "dim": int(text.shape[1]),
            "cache_path": str(emb.cache_path) if emb.cache_path else None,
        }
    return Prepared(dataset, stats, split, text, meta)


def build_method(cfg: ExperimentConfig, prepared: Prepared) -> Method:
    """Instantiate the configured method for the prepared data."""
    ctx = MethodContext(
        num_items=prepared.dataset.num_items,
        max_len=prepared.split.config.max_len,
        item_stats=prepared.stats,
        text_embeddings=prepared.text_embeddings,
    )
    return METHODS.build(cfg.method, cfg.method_config, context=ctx)
