"""The data side of an experiment: dataset, split, item statistics and, for methods that
read item text, the text embeddings; and building the method on them."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from padrec.config import from_dict
from padrec.data import compute_item_stats, make_split
from padrec.data.loading import DataConfig, load_dataset
from padrec.data.stats import ItemStats
from padrec.experiment.config import ExperimentConfig
from padrec.methods import METHODS, Domain, Method, MethodContext
from padrec.training.distributed import Distributed


@dataclass
class Prepared:
    """Data side of an experiment, built once and shared by seeds."""

    dataset: Any
    stats: ItemStats
    split: Any
    text_embeddings: torch.Tensor | None
    text_meta: dict[str, Any]
    item_texts: list[str] | None = None


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
    text, meta, texts = None, {}, None
    method_cls, settings = METHODS.get(cfg.method), cfg.method_settings()
    if method_cls.needs_item_texts(settings):
        texts = item_texts(dataset, cfg)
    if method_cls.needs_text(settings):
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
    return Prepared(dataset, stats, split, text, meta, texts)


def item_texts(dataset: Any, cfg: ExperimentConfig) -> list[str]:
    """The dataset's item texts rendered with ``text.template`` (N+1 strings, ``""`` = padding);
    items without text are an error unless ``text.on_missing`` is ``zero`` (they get ``""``)."""
    from padrec.text import TextConfig
    from padrec.text.errors import TextError
    from padrec.text.templates import render_texts

    tcfg = from_dict(TextConfig, cfg.text, where="text")
    rendered = render_texts(dataset.item_table, tcfg.template)
    if rendered.missing and tcfg.on_missing == "error":
        shown = ", ".join(f"{dataset.item_ids[i]} ({why})" for i, why in list(rendered.missing.items())[:10])
        raise TextError(
            f"{dataset.name}: {len(rendered.missing)} item(s) have no text under template "
            f"{tcfg.template!r}: {shown}; set text.on_missing: zero to give them empty text"
        )
    return rendered.texts


def load_domain(name: str, cfg: ExperimentConfig) -> Domain:
    """Another dataset, found by its name alone (``prime_pantry``, ``games``, ...), under the
    run's split and text settings (and its data cache)."""
    data_cfg = DataConfig(name=name, cache_dir=cfg.data.cache_dir, use_cache=cfg.data.use_cache)
    dataset = load_dataset(data_cfg)
    return Domain(dataset.name, make_split(dataset, cfg.split), item_texts(dataset, cfg))


def build_method(cfg: ExperimentConfig, prepared: Prepared) -> Method:
    """Instantiate the configured method for the prepared data."""
    ctx = MethodContext(
        num_items=prepared.dataset.num_items,
        max_len=prepared.split.config.max_len,
        item_stats=prepared.stats,
        text_embeddings=prepared.text_embeddings,
        item_texts=prepared.item_texts,
        domain=functools.partial(load_domain, cfg=cfg),
        work_dir=cfg.run_dir(),
    )
    return METHODS.build(cfg.method, cfg.method_config, context=ctx)
