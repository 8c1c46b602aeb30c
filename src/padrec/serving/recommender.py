"""Answer top-k requests from a run's ``serving.safetensors`` (no LLM, no dataset per request).

``Recommender.load(run_dir)`` rebuilds the method from ``serving.json`` with a placeholder
text matrix (never read: every item representation is a precomputed table), applies the
same ``for_serving`` transformation and loads the exported weights. A request runs only the
backbones and one matrix product against the method's factored item matrix
(:class:`~padrec.methods.base.ScoreFactors`), or an ANN search beyond
``AnnConfig.threshold`` items. :meth:`Recommender.add_items` places items from their text
alone (encoded once, by the run's encoder) in every text-based expert.

Thread safety: requests read under a shared lock; adding items encodes outside it and then
swaps the tables under an exclusive one, so reads never see a half-added item.
"""

from __future__ import annotations

import dataclasses
import math
import threading
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
from padrec.methods.base import NewItemsUnsupported
from padrec.models.items.precomputed import drop_text_adapters, grow_rows
from padrec.rundir import check_complete
from padrec.serving.ann import AnnConfig, AnnIndex
from padrec.serving.catalog import Catalog
from padrec.serving.locks import ReadWriteLock
from padrec.serving.new_items import ItemTextEncoder, NewItem, NewItemError
from padrec.training.checkpoint import load_weights
from padrec.training.memory import release_freed_memory

# serving files before this format have no text adapters (no new items)
ADAPTERS_SINCE = 3


@dataclass
class Recommendation:
    """Top-k answer: internal item ids, scores, each part's share of the score (PAD: per
    expert; None unless asked) and the latency of the call in ms."""

    items: list[int]
    scores: list[float]
    latency_ms: float
    parts: dict[str, list[float]] | None = None


class Recommender:
    """A trained method ready to answer requests.

    Args:
        method: the served method (``Method.for_serving()``: eval mode, item tables precomputed).
        max_len: history window L.
        exclude_history: default for dropping the history's items from answers (PAD's protocol).
        item_ids, titles: raw item ids and titles by internal id (None when the run's
            serving file predates them; callers then read the dataset).
        text_encoder: encodes new items (None: new items only with their embeddings, or none).
        ann: when to use an ANN index and its settings.
        meta: the serving sidecar (for ``describe``).
    """

    def __init__(
        self,
        method: Method,
        max_len: int,
        exclude_history: bool = True,
        item_ids: list[str] | None = None,
        titles: list[str] | None = None,
        text_encoder: ItemTextEncoder | None = None,
        ann: AnnConfig | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.method = method.eval()
        self.max_len = max_len
        self.exclude_history = exclude_history
        self.catalog = Catalog(list(item_ids), list(titles)) if item_ids is not None and titles is not None else None
        self.text_encoder = text_encoder
        self.ann_config = ann or AnnConfig()
        self.meta = meta or {}
        self.device = next(self.method.buffers()).device
        self.lock = ReadWriteLock()
        self._write = threading.Lock()  # one add_items at a time (id allocation)
        # one forward pass at a time: concurrent requests on a few cores otherwise contend for
        # the cores and the GIL, and throughput fell below a single client's (BENCHMARKS §8.2)
        self._infer = threading.Lock()
        self.ann: AnnIndex | None = None
        self._refresh()

    # --- loading ----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        device: str = "cpu",
        num_threads: int = 0,
        ann: AnnConfig | None = None,
        encoder_device: str = "cpu",
    ) -> Recommender:
        """Load ``run_dir/serving.safetensors`` (written at the end of training), verified:
        an incomplete run, a damaged file or weights that do not match the method are refused."""
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
        if int(meta.get("serving_format", 0)) < ADAPTERS_SINCE:
            drop_text_adapters(method)
        load_weights(method, path)
        return cls(
            method,
            int(meta["max_len"]),
            exclude_history=history_handling != "none",
            item_ids=meta.get("item_ids"),
            titles=meta.get("titles"),
            text_encoder=ItemTextEncoder.from_serving_meta(meta, encoder_device),
            ann=ann,
            meta=meta,
        )

    # --- state ------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return self.method.num_items

    @property
    def item_ids(self) -> list[str] | None:
        """Raw item ids by internal id (None when the serving file predates them)."""
        return self.catalog.item_ids if self.catalog is not None else None

    @property
    def titles(self) -> list[str] | None:
        """Titles by internal id (None when the serving file predates them)."""
        return self.catalog.titles if self.catalog is not None else None

    def _refresh(self) -> None:
        """Recompute the factored item matrix and (beyond the threshold) the ANN index."""
        with torch.inference_mode():
            self.factors = self.method.score_factors()
        threshold = self.ann_config.threshold
        use_ann = self.factors is not None and threshold > 0 and self.num_items > threshold
        self.ann = AnnIndex(self.factors.items, self.ann_config) if use_ann else None

    def new_items_unsupported(self) -> str | None:
        """Why items cannot be added to this run, or None when they can."""
        why = self.method.new_items_unsupported()
        if why is None and self.catalog is None:
            why = "this run's serving file has no item ids (retrain with this padrec version)"
        if why is None and int(self.meta.get("serving_format", ADAPTERS_SINCE)) < ADAPTERS_SINCE:
            why = "this run's serving file predates new items (retrain with this padrec version)"
        return why

    def describe(self) -> dict[str, Any]:
        """JSON facts about the served model."""
        return {
            "method": self.meta.get("method"),
            "phase": self.meta.get("phase"),
            "num_items": self.num_items,
            "added_items": len(self.catalog.added) if self.catalog else 0,
            "max_len": self.max_len,
            "exclude_history": self.exclude_history,
            "parts": list(self.factors.parts) if self.factors else ["score"],
            "top_k": "ann" if self.ann is not None else "exact",
            "ann_threshold": self.ann_config.threshold,
            "new_items": self.new_items_unsupported() or "supported",
            "text": self.text_encoder.describe() if self.text_encoder else None,
            "device": str(self.device),
        }

    # --- requests ---------------------------------------------------------------------
    def _histories(self, histories: list[list[int]]) -> torch.Tensor:
        rows = [left_pad(np.asarray(h[-self.max_len :], dtype=np.int64), self.max_len) for h in histories]
        return torch.from_numpy(np.stack(rows)).to(self.device)

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.num_items:
            raise ValueError(f"k must be between 1 and the catalogue size {self.num_items}, got {k}")

    @torch.inference_mode()
    def recommend(
        self,
        history: list[int],
        k: int = 10,
        exclude_history: bool | None = None,
        allow: list[int] | None = None,
        deny: list[int] | None = None,
        explain: bool = False,
    ) -> Recommendation:
        """Top-``k`` items for one history of internal item ids (oldest first).

        Args:
            exclude_history: drop the history's items (None: the run's protocol).
            allow: rank only these items; deny: never return these.
            explain: also return each part's share of each score (``Recommendation.parts``).
        """
        return self.recommend_batch([history], k, exclude_history, allow, deny, explain)[0]

    @torch.inference_mode()
    def recommend_batch(
        self,
        histories: list[list[int]],
        k: int = 10,
        exclude_history: bool | None = None,
        allow: list[int] | None = None,
        deny: list[int] | None = None,
        explain: bool = False,
    ) -> list[Recommendation]:
        """:meth:`recommend` for several histories in one forward pass; the latency of each
        answer is that of the whole call."""
        self.check_k(k)
        exclude = self.exclude_history if exclude_history is None else exclude_history
        with self.lock.read(), self._infer:
            t0 = time.perf_counter()
            hist = self._histories(histories)
            if self.factors is not None:
                query = self.factors.query(hist)
                if self.ann is not None and allow is None:
                    scores, ids = self._ann_top(query, histories, k, exclude, deny)
                else:
                    scores, ids = self._exact_top(query @ self.factors.items.t(), histories, k, exclude, allow, deny)
            else:
                query = None
                scores, ids = self._exact_top(self.method.score_all(hist), histories, k, exclude, allow, deny)
            parts = self._parts(query, ids) if explain else None
            ms = (time.perf_counter() - t0) * 1000
        out = []
        for b in range(len(histories)):
            keep = torch.isfinite(scores[b]) & (ids[b] > 0)
            items, vals = ids[b][keep].tolist(), scores[b][keep].tolist()
            share = None
            if parts is not None:
                share = {name: p[b][keep].tolist() for name, p in parts.items()}
            out.append(Recommendation(items, vals, ms, share))
        return out

    def _exact_top(
        self,
        scores: torch.Tensor,
        histories: list[list[int]],
        k: int,
        exclude: bool,
        allow: list[int] | None,
        deny: list[int] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # a NaN or infinite score (an item vector gone out of range) must not displace the others
        scores.masked_fill_(~torch.isfinite(scores), float("-inf"))
        scores[:, 0] = float("-inf")
        if allow is not None:
            mask = torch.ones(scores.shape[1], dtype=torch.bool, device=scores.device)
            mask[torch.as_tensor(allow, dtype=torch.long, device=scores.device)] = False
            scores[:, mask] = float("-inf")
        if deny:
            scores[:, torch.as_tensor(deny, dtype=torch.long, device=scores.device)] = float("-inf")
        if exclude:
            for b, h in enumerate(histories):
                if h:
                    scores[b, torch.as_tensor(h, dtype=torch.long, device=scores.device)] = float("-inf")
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        return top.values.cpu(), top.indices.cpu()

    def _ann_top(
        self, query: torch.Tensor, histories: list[list[int]], k: int, exclude: bool, deny: list[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.ann is not None
        banned = [set(deny or ()) | (set(h) if exclude else set()) for h in histories]
        want = k + max(len(b) for b in banned)
        scores, ids = self.ann.search(query, min(want, self.ann.size))
        out_s = torch.full((len(histories), k), float("-inf"))
        out_i = torch.zeros((len(histories), k), dtype=torch.long)
        for b in range(len(histories)):
            found = zip(scores[b].tolist(), ids[b].tolist())
            kept = [i for s, i in found if i > 0 and i not in banned[b] and math.isfinite(s)][:k]
            if kept:
                # the index found them; their scores are the exact ones, as on the exact path
                rows = self.factors.items[torch.as_tensor(kept, device=self.device)]
                exact = (rows @ query[b]).cpu()
                order = torch.argsort(exact, descending=True)
                out_s[b, : len(kept)] = exact[order]
                out_i[b, : len(kept)] = torch.as_tensor(kept)[order]
        return out_s, out_i

    def _parts(self, query: torch.Tensor | None, ids: torch.Tensor) -> dict[str, torch.Tensor] | None:
        if query is None or self.factors is None:
            return None
        rows = self.factors.items[ids.to(self.device)]  # B × k × D'
        return {
            name: torch.einsum("bd,bkd->bk", query[:, cols], rows[..., cols]).cpu()
            for name, cols in self.factors.parts.items()
        }

    # --- new items --------------------------------------------------------------------
    def add_items(self, items: list[NewItem]) -> list[tuple[int, bool]]:
        """Add or update items from their text (or given embeddings); returns ``(internal id,
        created)`` per item. Raises :class:`NewItemsUnsupported` for ID-only runs and
        :class:`NewItemError` for items that cannot be encoded (nothing is changed then)."""
        why = self.new_items_unsupported()
        if why is not None:
            raise NewItemsUnsupported(why)
        assert self.catalog is not None and self.text_encoder is not None
        seen: set[str] = set()
        for it in items:
            if it.id in seen:
                raise NewItemError(f"item '{it.id}' is given twice")
            seen.add(it.id)
        with self._write:
            text = self.text_encoder.encode(items)  # outside the read/write lock: requests go on
            with self.lock.write():
                ids, created, n = [], [], self.catalog.num_items
                for it in items:
                    i = self.catalog.lookup(it.id)
                    if i is None:
                        n += 1
                        i = n
                    ids.append(i)
                    created.append(i > self.catalog.num_items)
                id_t = torch.as_tensor(ids, dtype=torch.long, device=self.device)
                bad = self._first_non_finite(id_t, text.to(self.device))
                if bad is not None:  # nothing is changed yet
                    raise NewItemError(
                        f"item '{items[bad].id}': its embedding gives the model non-finite item vectors "
                        "(values far outside the run's text embeddings)"
                    )
                self.method.add_items(id_t, text.to(self.device))
                for it, i, new in zip(items, ids, created):
                    title = it.title or (self.catalog.titles[i] if not new else it.id)
                    self.catalog.set_item(i, it.id, title, new)
                self._update_index(id_t)
        return list(zip(ids, created))

    @torch.inference_mode()
    def _first_non_finite(self, ids: torch.Tensor, text: torch.Tensor) -> int | None:
        """Position of the first item whose text gives some expert a NaN or infinite vector
        (a dry run of the text adapters), or None."""
        ok = torch.ones(len(ids), dtype=torch.bool)
        for table in self.method.item_tables():
            if table.adapter is not None:
                dev = table.table.device
                for out in table.adapter(text.to(dev), ids.to(dev)):
                    ok &= torch.isfinite(out).all(dim=-1).cpu()
        bad = (~ok).nonzero()
        return int(bad[0]) if bad.numel() else None

    def _update_index(self, ids: torch.Tensor) -> None:
        """Bring the factored item matrix and the ANN index up to date with items ``ids``."""
        with torch.inference_mode():
            if self.factors is not None and self.factors.rows is not None:
                items = grow_rows(self.factors.items, self.num_items + 1)
                items[ids] = self.factors.rows(ids)
                self.factors = dataclasses.replace(self.factors, items=items)
            else:
                self.factors = self.method.score_factors()
        if self.ann is not None and self.factors is not None:
            self.ann.upsert(ids, self.factors.items[ids])
        elif self.factors is not None and self.ann_config.threshold and self.num_items > self.ann_config.threshold:
            self.ann = AnnIndex(self.factors.items, self.ann_config)
        release_freed_memory()  # tables grew: hand the freed blocks back (the heap fragments otherwise)


def _saved_method(meta: dict[str, Any], path: Path) -> tuple[str, dict[str, Any], str]:
    """(method, method config, history handling) from a serving sidecar, current or older."""
    try:
        history = meta.get("history_handling") or meta["experiment"]["eval"]["history_handling"]
        return meta["method"], meta["method_config"], history
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path.with_suffix('.json')}: missing field {exc} (not a padrec serving file?)") from None
