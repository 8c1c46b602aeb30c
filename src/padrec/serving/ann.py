"""Approximate top-k over a large catalogue with faiss.

Exact top-k is one (B×D')·(D'×N) matrix product; beyond a configurable catalogue size the
service searches an index instead. Two kinds:

- ``hnsw`` (default): a graph index (``IndexHNSWFlat``). Scores are inner products whose item
  norms vary (PAD folds its gate weights into the rows), and graph search on raw inner products
  finds few of the true top items; so items are first mapped to Euclidean nearest-neighbour
  search by the usual reduction (Bachrach et al., RecSys 2014): ``x' = [x ; sqrt(M² − ‖x‖²)]``
  with M a bound on the norms, ``q' = [q ; 0]``, so ``‖q' − x'‖² = ‖q‖² + M² − 2 q·x`` orders
  items as their inner products do. An updated item gets a new slot and its old one is
  skipped (HNSW cannot delete).
- ``ivf``: an inner-product inverted-file index (``IndexIVFFlat``), k-means lists of the
  items, ``nprobe`` lists scanned per query; items are replaced in place.

:func:`recall_at_k` measures an index against exact top-k on real queries (BENCHMARKS.md §8).
faiss is optional (``pip install faiss-cpu``, extra ``serve``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

# room above the largest item norm at build time, for items added later (beyond it the
# reduction is clamped, an approximation for those items only)
NORM_HEADROOM = 1.25


@dataclass
class AnnConfig:
    """Settings of the ANN index.

    Attributes:
        threshold: use the index when the catalogue holds more than this many items
            (0 = never; exact top-k up to it).
        kind: ``hnsw`` (graph, default) or ``ivf`` (inverted lists).
        hnsw_m: graph degree of ``hnsw``.
        ef_construction: candidate list while building ``hnsw``.
        ef_search: candidate list per query of ``hnsw`` (recall against speed).
        nlist: ``ivf`` lists; 0 = about 4·sqrt(N) (faiss' guideline), at most N / 39.
        nprobe: ``ivf`` lists scanned per query.
        train_size: items sampled to train the ``ivf`` quantiser (0 = all).
        seed: sampling and k-means seed.
    """

    threshold: int = 200_000
    kind: Literal["hnsw", "ivf"] = "hnsw"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int = 0
    nprobe: int = 32
    train_size: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("hnsw", "ivf"):
            raise ValueError(f"ann kind must be hnsw or ivf, got {self.kind!r}")
        for name in ("threshold", "nlist", "train_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"ann {name} must be >= 0, got {getattr(self, name)}")
        for name in ("nprobe", "hnsw_m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ValueError(f"ann {name} must be >= 1, got {getattr(self, name)}")


def require_faiss():
    """Import faiss or fail saying how to install it."""
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the ANN index needs faiss: pip install faiss-cpu (or padrec[serve])") from exc
    return faiss


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().float().numpy())


class AnnIndex:
    """An index over item rows 1..N of a (N+1)×D' matrix (ids = internal ids).

    Args:
        items: (N+1, D') float item matrix (row 0, padding, is left out).
        config: :class:`AnnConfig`.
    """

    def __init__(self, items: torch.Tensor, config: AnnConfig) -> None:
        faiss = require_faiss()
        x = _np(items[1:])
        n, dim = x.shape
        self.config, self.dim, self.kind = config, dim, config.kind
        self.stale = 0
        if config.kind == "hnsw":
            self.max_norm = float(np.linalg.norm(x, axis=1).max(initial=0.0)) * NORM_HEADROOM or 1.0
            self.index = faiss.IndexHNSWFlat(dim + 1, config.hnsw_m)
            self.index.hnsw.efConstruction = config.ef_construction
            self.index.hnsw.efSearch = config.ef_search
            self.slot_item = np.zeros(0, dtype=np.int64)  # slot -> internal id (-1: replaced)
            self.item_slot: dict[int, int] = {}
            self._add_slots(np.arange(1, n + 1, dtype=np.int64), x)
        else:
            nlist = config.nlist or int(min(max(1, round(4 * math.sqrt(n))), max(1, n // 39)))
            self.nlist = nlist
            self._quantizer = faiss.IndexFlatIP(dim)  # faiss does not own it from Python
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(config.seed)
            big = config.train_size and n > config.train_size
            sample = x[rng.choice(n, config.train_size, replace=False)] if big else x
            self.index.cp.seed = config.seed
            self.index.train(sample)
            self.index.add_with_ids(x, np.arange(1, n + 1, dtype=np.int64))
            self.index.nprobe = min(config.nprobe, nlist)

    @property
    def size(self) -> int:
        """Items the index answers with (replaced HNSW slots not counted)."""
        return int(self.index.ntotal) - self.stale

    def _augment(self, x: np.ndarray) -> np.ndarray:
        extra = np.sqrt(np.maximum(self.max_norm**2 - (x.astype(np.float64) ** 2).sum(1), 0.0))
        return np.ascontiguousarray(np.hstack([x, extra[:, None].astype(np.float32)]))

    def _add_slots(self, ids: np.ndarray, x: np.ndarray) -> None:
        start = len(self.slot_item)
        self.index.add(self._augment(x))
        self.slot_item = np.concatenate([self.slot_item, ids])
        for j, i in enumerate(ids.tolist()):
            self.item_slot[i] = start + j

    def upsert(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        """Insert or replace items ``ids`` ((M,) internal ids) with rows ``rows`` ((M, D'))."""
        faiss = require_faiss()
        idx = np.ascontiguousarray(ids.cpu().numpy().astype(np.int64))
        x = _np(rows)
        if self.kind == "hnsw":
            for i in idx.tolist():
                old = self.item_slot.get(i)
                if old is not None:
                    self.slot_item[old] = -1
                    self.stale += 1
            self._add_slots(idx, x)
            return
        self.index.remove_ids(faiss.IDSelectorArray(idx.size, faiss.swig_ptr(idx)))
        self.index.add_with_ids(x, idx)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D') queries -> (B, k) inner-product scores and (B, k) internal ids, best first
        (id -1 where fewer were found)."""
        q = _np(queries)
        if self.kind == "ivf":
            scores, ids = self.index.search(q, k)
            return torch.from_numpy(scores), torch.from_numpy(ids)
        want = min(k + self.stale, int(self.index.ntotal))
        dist, slots = self.index.search(np.hstack([q, np.zeros((len(q), 1), np.float32)]), want)
        ip = ((q.astype(np.float64) ** 2).sum(1)[:, None] + self.max_norm**2 - dist) / 2
        items = np.where(slots >= 0, self.slot_item[np.maximum(slots, 0)], -1)
        out_s = np.full((len(q), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(q), k), -1, dtype=np.int64)
        for b in range(len(q)):
            keep = items[b] >= 0
            got_i, got_s = items[b][keep][:k], ip[b][keep][:k]
            out_i[b, : len(got_i)], out_s[b, : len(got_s)] = got_i, got_s
        return torch.from_numpy(out_s), torch.from_numpy(out_i)


def recall_at_k(index: AnnIndex, items: torch.Tensor, queries: torch.Tensor, k: int = 10) -> float:
    """Mean |ANN top-k ∩ exact top-k| / k over ``queries`` ((B, D')) against ``items`` ((N+1, D'))."""
    exact = (queries @ items[1:].t()).topk(k, dim=1).indices + 1
    _, found = index.search(queries, k)
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(exact, found))
    return hits / (k * queries.shape[0])
