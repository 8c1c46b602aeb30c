"""Export a trained method for serving and answer top-k requests from precomputed vectors.

``export_serving(method, run_dir)`` freezes every expert's item vectors into tables and saves
``serving.safetensors`` + ``serving.json``. ``Recommender.load(run_dir)`` rebuilds the method
with a placeholder text matrix (never read), swaps in the tables and loads the weights, so a
request runs only the backbones, one matrix product per expert and a top-k: no text encoder
or language model.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from padrec.data.protocols import left_pad
from padrec.methods import METHODS, Method, MethodContext
from padrec.models.experts import freeze_item_tables
from padrec.training.checkpoint import load_weights, read_json, save_weights


def export_serving(method: Method, run_dir: str | Path, meta: dict) -> Path:
    """Save a frozen copy of ``method`` to ``run_dir/serving.safetensors`` (+ ``.json``)."""
    frozen = copy.deepcopy(method).eval()
    freeze_item_tables(frozen)
    if hasattr(frozen, "prepare_serving"):
        frozen.prepare_serving()
    path = Path(run_dir) / "serving.safetensors"
    text = method.context.text_embeddings
    save_weights(frozen, path, {**meta, "text_dim": int(text.shape[1]) if text is not None else 0})
    return path


@dataclass
class Recommendation:
    """Top-k answer: item ids (internal), scores, and the latency of the call in ms."""

    items: list[int]
    scores: list[float]
    latency_ms: float


class Recommender:
    """A trained method ready to answer requests.

    Args:
        method: the frozen method (eval mode, item tables precomputed).
        max_len: history window L.
        exclude_history: drop the history's items from the answer (PAD's protocol).
    """

    def __init__(self, method: Method, max_len: int, exclude_history: bool = True) -> None:
        self.method = method.eval()
        self.max_len = max_len
        self.exclude_history = exclude_history

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu", num_threads: int = 0) -> "Recommender":
        """Load ``run_dir/serving.safetensors`` (written at the end of training)."""
        run_dir = Path(run_dir)
        path = run_dir / "serving.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"{run_dir}: no serving.safetensors (train the run with this padrec version)")
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        meta = read_json(path.with_suffix(".json"))
        from padrec.data.stats import ItemStats
        from padrec.experiment import final_phase, load_experiment_config

        cfg = load_experiment_config(meta["experiment"])
        n = int(meta["num_items"])
        text = torch.zeros(n + 1, meta["text_dim"]) if meta.get("text_dim") else None
        stats = (
            ItemStats(
                **{
                    k: (np.asarray(v) if isinstance(v, list) and k != "bucket_bounds" else v)
                    for k, v in meta["item_stats"].items()
                }
            )
            if meta.get("item_stats")
            else None
        )
        ctx = MethodContext(num_items=n, max_len=int(meta["max_len"]), item_stats=stats, text_embeddings=text)
        method = METHODS.build(cfg.method, cfg.method_config, context=ctx)
        method.begin_phase(final_phase(method, meta))
        method.eval()
        freeze_item_tables(method)
        if hasattr(method, "prepare_serving"):
            method.prepare_serving()
        method.to(device)
        load_weights(method, path)
        return cls(method, int(meta["max_len"]), exclude_history=cfg.eval.history_handling != "none")

    @torch.inference_mode()
    def recommend(self, history: list[int], k: int = 10) -> Recommendation:
        """Top-``k`` items for one history of internal item ids (oldest first)."""
        t0 = time.perf_counter()
        device = next(self.method.buffers()).device
        hist = torch.from_numpy(left_pad(np.asarray(history, dtype=np.int64), self.max_len)).to(device)[None]
        scores = self.method.score_all(hist)[0]
        scores[0] = float("-inf")
        if self.exclude_history and history:
            scores[torch.as_tensor(history, device=device)] = float("-inf")
        top = torch.topk(scores, k)
        ms = (time.perf_counter() - t0) * 1000
        return Recommendation(top.indices.tolist(), top.values.tolist(), ms)
