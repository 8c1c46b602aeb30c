"""Answer top-k requests from a run's ``serving.safetensors`` (no LLM, no dataset per request).

``Recommender.load(run_dir)`` rebuilds the method from ``serving.json`` with a placeholder
text matrix (never read: every item representation is a precomputed table), applies the
same ``for_serving`` transformation and loads the exported weights, so a request runs only
the backbones, one matrix product per expert and a top-k.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padrec.data.protocols import left_pad
from padrec.data.stats import ItemStats
from padrec.devices import resolve_device
from padrec.io import read_json
from padrec.methods import METHODS, Method, MethodContext, saved_phase
from padrec.rundir import check_complete
from padrec.training.checkpoint import load_weights


@dataclass
class Recommendation:
    """Top-k answer: item ids (internal), scores, and the latency of the call in ms."""

    items: list[int]
    scores: list[float]
    latency_ms: float


class Recommender:
    """A trained method ready to answer requests.

    Args:
        method: the served method (``Method.for_serving()``: eval mode, item tables precomputed).
        max_len: history window L.
        exclude_history: drop the history's items from the answer (PAD's protocol).
        item_ids, titles: raw item ids and titles by internal id (None when the run's
            serving file predates them; callers then read the dataset).
    """

    def __init__(
        self,
        method: Method,
        max_len: int,
        exclude_history: bool = True,
        item_ids: list[str] | None = None,
        titles: list[str] | None = None,
    ) -> None:
        self.method = method.eval()
        self.max_len = max_len
        self.exclude_history = exclude_history
        self.item_ids = item_ids
        self.titles = titles

    @property
    def num_items(self) -> int:
        return self.method.num_items

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu", num_threads: int = 0) -> Recommender:
        """Load ``run_dir/serving.safetensors`` (written at the end of training)."""
        run_dir = Path(run_dir)
        check_complete(run_dir)
        path = run_dir / "serving.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"{run_dir}: no serving.safetensors (train the run with this padrec version)")
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        meta = read_json(path.with_suffix(".json"), expect=dict)
        method_name, method_config, history_handling = _saved_method(meta, path)
        n = int(meta["num_items"])
        for key in ("item_ids", "titles"):
            if meta.get(key) is not None and len(meta[key]) != n + 1:
                raise ValueError(
                    f"{path.with_suffix('.json')}: '{key}' has {len(meta[key])} entries, expected "
                    f"num_items + 1 = {n + 1}"
                )
        text = torch.zeros(n + 1, meta["text_dim"]) if meta.get("text_dim") else None
        stats = ItemStats.from_json(meta["item_stats"]) if meta.get("item_stats") else None
        ctx = MethodContext(num_items=n, max_len=int(meta["max_len"]), item_stats=stats, text_embeddings=text)
        method = METHODS.build(method_name, method_config, context=ctx)
        method.set_phase(saved_phase(method, meta.get("phase"), str(path.with_suffix(".json"))))
        method = method.for_serving(copy_model=False).to(resolve_device(device))
        load_weights(method, path)
        return cls(
            method,
            int(meta["max_len"]),
            exclude_history=history_handling != "none",
            item_ids=meta.get("item_ids"),
            titles=meta.get("titles"),
        )

    @torch.inference_mode()
    def recommend(self, history: list[int], k: int = 10) -> Recommendation:
        """Top-``k`` items for one history of internal item ids (oldest first)."""
        if not 1 <= k <= self.num_items:
            raise ValueError(f"k must be between 1 and the catalogue size {self.num_items}, got {k}")
        t0 = time.perf_counter()
        device = next(self.method.buffers()).device
        hist = torch.from_numpy(left_pad(np.asarray(history, dtype=np.int64), self.max_len)).to(device)[None]
        scores = self.method.score_all(hist)[0]
        scores[0] = float("-inf")
        if self.exclude_history and history:
            scores[torch.as_tensor(history, device=device)] = float("-inf")
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        ms = (time.perf_counter() - t0) * 1000
        return Recommendation(top.indices.tolist(), top.values.tolist(), ms)


def _saved_method(meta: dict[str, Any], path: Path) -> tuple[str, dict[str, Any], str]:
    """(method, method config, history handling) from a serving sidecar, current or older."""
    try:
        history = meta.get("history_handling") or meta["experiment"]["eval"]["history_handling"]
        return meta["method"], meta["method_config"], history
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path.with_suffix('.json')}: missing field {exc} (not a padrec serving file?)") from None
