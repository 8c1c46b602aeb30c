"""FAERec's evaluation protocol for the peer runners: numpy + torch only, no padrec import.

Importable from padrec's environment and from the RecBole and RePlay virtualenvs (the runners put
this folder on ``sys.path``). It reads the split written by ``export_split.py`` and ranks full
score matrices exactly as padrec does with ``eval.history_handling: zero``
(``padrec.evaluation.ranking._rank_chunk``):

- scores are (B, N+1) over item ids 0..N; column 0 (padding) is never rankable (``-inf``); NaN
  counts as ``-inf`` (unrankable), ``+inf`` stays;
- FAERec's release quirk: the scores of the user's *seen* items (every item of the whole history
  before the target, not only the 50-item window; a repeated target included) are set to 0, not
  removed;
- ``rank = #{i: s_i > s_t} + #{i < t: s_i = s_t}`` (ties broken by item id, smaller first); a
  target scored ``-inf`` gets ``rank = N`` (a miss);
- ``HR@K = 1[rank < K]``, ``NDCG@K = 1[rank < K] / log2(rank + 2)``, averaged over users.

``check_protocol.py`` compares this module to padrec's evaluator (max difference 0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["EvalData", "evaluate_scores", "load_split", "metrics_from_ranks", "rank_targets"]

DEFAULT_SPLIT = "/work/venvs/peer_data/beauty/split.npz"

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalData:
    """One evaluation set: histories (U, L) left-padded with 0, targets (U,), seen-item CSR."""

    users: np.ndarray
    histories: np.ndarray
    targets: np.ndarray
    seen_indptr: np.ndarray
    seen_items: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def head(self, n: int) -> "EvalData":
        """The first ``n`` users (all when ``n`` is 0 or not smaller than the set): smoke tests only."""
        if not n or n >= len(self):
            return self
        end = int(self.seen_indptr[n])
        return EvalData(
            self.users[:n], self.histories[:n], self.targets[:n], self.seen_indptr[: n + 1], self.seen_items[:end]
        )


def load_split(path: str | Path = DEFAULT_SPLIT) -> dict:
    """The exported split: ``num_items``, ``max_len``, ``train`` (a list of int64 sequences, one per
    training user), ``train_users``, ``valid`` and ``test`` (:class:`EvalData`)."""
    z = np.load(path, allow_pickle=False)
    indptr, items = z["train_indptr"], z["train_items"]
    train = [items[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]
    out = {
        "num_items": int(z["num_items"]),
        "max_len": int(z["max_len"]),
        "train": train,
        "train_users": z["train_users"],
    }
    for name in ("valid", "test"):
        out[name] = EvalData(
            z[f"{name}_users"],
            z[f"{name}_histories"],
            z[f"{name}_targets"],
            z[f"{name}_seen_indptr"],
            z[f"{name}_seen_items"],
        )
    return out


def rank_targets(
    scores: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    seen_indptr: np.ndarray,
    seen_items: np.ndarray,
) -> torch.Tensor:
    """0-based ranks (B,) int64 of ``targets`` under FAERec's rule (module docstring).

    Args:
        scores: (B, N+1) scores over item ids 0..N; not modified.
        targets: (B,) target item ids in 1..N.
        seen_indptr: (B+1,) CSR offsets into ``seen_items`` for these B users (may start above 0).
        seen_items: the seen items of the users (CSR values).
    """
    s = torch.as_tensor(scores)
    if s.dtype not in (torch.float32, torch.float64):
        s = s.float()
    n = s.shape[1] - 1
    s = torch.nan_to_num(s, nan=-math.inf, posinf=math.inf, neginf=-math.inf)  # a copy
    s[:, 0] = -math.inf
    indptr = np.asarray(seen_indptr, dtype=np.int64)
    lens = np.diff(indptr)
    if lens.sum():
        cols = torch.from_numpy(np.asarray(seen_items[indptr[0] : indptr[-1]], dtype=np.int64))
        rows = torch.from_numpy(np.repeat(np.arange(len(lens)), lens))
        s[rows, cols] = 0.0  # FAERec: seen items scored 0, still rankable
    tg = torch.as_tensor(np.asarray(targets, dtype=np.int64)).view(-1, 1)
    t = s.gather(1, tg)
    higher = (s > t).sum(1)
    ids = torch.arange(n + 1).view(1, -1)
    tied_before = ((s == t) & (ids < tg)).sum(1)
    ranks = higher + tied_before
    return torch.where(t.view(-1) == -math.inf, torch.full_like(ranks, n), ranks).long()


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """Mean HR@K and NDCG@K over users from 0-based ranks."""
    r = np.asarray(ranks, dtype=np.int64)
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        ndcg = np.zeros(len(r), dtype=np.float64)
        ndcg[hit] = 1.0 / np.log2(r[hit] + 2.0)
        out[f"HR@{k}"] = float(hit.mean()) if len(r) else 0.0
        out[f"NDCG@{k}"] = float(ndcg.mean()) if len(r) else 0.0
    return out


def evaluate_scores(
    score_fn: ScoreFn,
    data: EvalData,
    num_items: int,
    ks: tuple[int, ...] = (10, 20),
    batch_size: int = 512,
    block_rows: int = 64,
) -> dict:
    """Score every user of ``data`` with ``score_fn`` and rank under FAERec's rule.

    Args:
        score_fn: histories (B, L) int64 (left-padded with 0, padrec's item ids) -> scores
            (B, N+1) over item ids 0..N (column 0 ignored). Called under ``torch.no_grad()``;
            eval mode is the caller's job.
        data: the users to evaluate.
        num_items: N (the score matrices must have N+1 columns).
        batch_size: users scored per call; ``block_rows``: rows ranked at once (cache friendly).
    Returns:
        ``{"metrics": {...}, "ranks": (U,) int64, "seconds": wall, "score_seconds": of which scoring}``.
    """
    start = time.perf_counter()
    scoring = 0.0
    ranks = np.empty(len(data), dtype=np.int64)
    with torch.no_grad():
        for lo in range(0, len(data), batch_size):
            hi = min(lo + batch_size, len(data))
            t = time.perf_counter()
            scores = score_fn(torch.from_numpy(np.ascontiguousarray(data.histories[lo:hi], dtype=np.int64)))
            scores = scores.detach().float().cpu()
            scoring += time.perf_counter() - t
            if tuple(scores.shape) != (hi - lo, num_items + 1):
                raise ValueError(f"score_fn returned {tuple(scores.shape)}, expected {(hi - lo, num_items + 1)}")
            for blo in range(lo, hi, block_rows):
                bhi = min(blo + block_rows, hi)
                ranks[blo:bhi] = rank_targets(
                    scores[blo - lo : bhi - lo], data.targets[blo:bhi], data.seen_indptr[blo : bhi + 1], data.seen_items
                ).numpy()
    return {
        "metrics": metrics_from_ranks(ranks, ks),
        "ranks": ranks,
        "seconds": time.perf_counter() - start,
        "score_seconds": scoring,
    }
