"""Approximate top-k over a large catalogue: a faiss inner-product IVF index.

Exact top-k is one (B×D')·(D'×N) matrix product; beyond a configurable catalogue size the
service searches an inverted-file index instead (``IndexIVFFlat``, inner product): items are
clustered into ``nlist`` lists by k-means on a sample, and a query scans the ``nprobe``
closest lists. :func:`recall_at_k` measures the index against exact top-k on real queries.
faiss is optional (``pip install faiss-cpu``, extra ``serve``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class AnnConfig:
    """Settings of the ANN index.

    Attributes:
        threshold: use the index when the catalogue holds more than this many items
            (0 = never; exact top-k below it).
        nlist: inverted lists; 0 = about 4·sqrt(N) (faiss' guideline), at most N / 39.
        nprobe: lists scanned per query (recall against speed).
        train_size: items sampled to train the k-means quantiser (0 = all).
        seed: sampling and k-means seed.
    """

    threshold: int = 200_000
    nlist: int = 0
    nprobe: int = 32
    train_size: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("threshold", "nlist", "train_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"ann {name} must be >= 0, got {getattr(self, name)}")
        if self.nprobe < 1:
            raise ValueError(f"ann nprobe must be >= 1, got {self.nprobe}")


def require_faiss():
    """Import faiss or fail saying how to install it."""
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the ANN index needs faiss: pip install faiss-cpu (or padrec[serve])") from exc
    return faiss


class AnnIndex:
    """An inner-product IVF index over item rows 1..N of a (N+1)×D' matrix (ids = internal ids).

    Args:
        items: (N+1, D') float item matrix (row 0, padding, is left out).
        config: :class:`AnnConfig`.
    """

    def __init__(self, items: torch.Tensor, config: AnnConfig) -> None:
        faiss = require_faiss()
        x = np.ascontiguousarray(items[1:].detach().cpu().float().numpy())
        n, dim = x.shape
        nlist = config.nlist or int(min(max(1, round(4 * math.sqrt(n))), max(1, n // 39)))
        self.config, self.dim, self.nlist = config, dim, nlist
        quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(config.seed)
        sample = (
            x if not config.train_size or n <= config.train_size else x[rng.choice(n, config.train_size, replace=False)]
        )
        self.index.cp.seed = config.seed
        self.index.train(sample)
        self.index.add_with_ids(x, np.arange(1, n + 1, dtype=np.int64))
        self.index.nprobe = min(config.nprobe, nlist)
        self._quantizer = quantizer  # faiss does not own it from Python

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def upsert(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        """Insert or replace items ``ids`` ((M,) internal ids) with rows ``rows`` ((M, D'))."""
        faiss = require_faiss()
        idx = np.ascontiguousarray(ids.cpu().numpy().astype(np.int64))
        self.index.remove_ids(faiss.IDSelectorArray(idx.size, faiss.swig_ptr(idx)))
        self.index.add_with_ids(np.ascontiguousarray(rows.detach().cpu().float().numpy()), idx)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D') queries -> (B, k) scores and (B, k) internal ids (-1 where fewer were found)."""
        q = np.ascontiguousarray(queries.detach().cpu().float().numpy())
        scores, ids = self.index.search(q, k)
        return torch.from_numpy(scores), torch.from_numpy(ids)


def recall_at_k(index: AnnIndex, items: torch.Tensor, queries: torch.Tensor, k: int = 10) -> float:
    """Mean |ANN top-k ∩ exact top-k| / k over ``queries`` ((B, D')) against ``items`` ((N+1, D'))."""
    exact = (queries @ items[1:].t()).topk(k, dim=1).indices + 1
    _, found = index.search(queries, k)
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(exact, found))
    return hits / (k * queries.shape[0])
