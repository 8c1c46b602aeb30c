"""Ranking metrics as plain functions of 0-based target ranks and top-K lists.

A rank ``r`` is the number of items placed above the target (0 = the target is first).
With one relevant item per user, ``HR@K = 1[r < K]`` and ``NDCG@K = 1[r < K] / log2(r + 2)``
(the ideal DCG is 1); both are averaged over users. See docs/EVALUATION.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from padrec.data.stats import GROUP_NAMES, ItemStats, popularity_bin, popularity_bin_labels

RANKING_METRICS = ("HR", "NDCG")
_METRIC_RE = re.compile(r"^(HR|NDCG|Coverage|TailCoverage)@([1-9][0-9]*)$")


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``"NDCG@10"`` into ``("NDCG", 10)``; raises ``ValueError`` on an unknown name.

    Known names: ``HR@K``, ``NDCG@K``, ``Coverage@K``, ``TailCoverage@K``.
    """
    m = _METRIC_RE.match(name)
    if not m:
        raise ValueError(f"unknown metric {name!r}; expected HR@K, NDCG@K, Coverage@K or TailCoverage@K")
    return m.group(1), int(m.group(2))


def per_user_hr(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user hit at K: (U,) float64, 1.0 where ``rank < k``."""
    return (np.asarray(ranks) < k).astype(np.float64)


def per_user_ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG at K: (U,) float64, ``1 / log2(rank + 2)`` where ``rank < k``, else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    hit = r < k
    out = np.zeros(r.shape, dtype=np.float64)
    out[hit] = 1.0 / np.log2(r[hit] + 2.0)
    return out


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user values (U,) of ``HR@K`` or ``NDCG@K`` (the inputs of per-user significance tests)."""
    kind, k = parse_metric(metric)
    if kind == "HR":
        return per_user_hr(ranks, k)
    if kind == "NDCG":
        return per_user_ndcg(ranks, k)
    raise ValueError(f"{metric!r} is not a per-user metric (use HR@K or NDCG@K)")


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@K averaged over users; NaN for zero users."""
    return float(per_user_hr(ranks, k).mean()) if len(ranks) else float("nan")


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@K averaged over users; NaN for zero users."""
    return float(per_user_ndcg(ranks, k).mean()) if len(ranks) else float("nan")


def ranking_metrics(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    """``{"HR@K": ..., "NDCG@K": ...}`` for every K in ``ks`` (HR first, then NDCG)."""
    out = {f"HR@{k}": hit_rate(ranks, k) for k in ks}
    out.update({f"NDCG@{k}": ndcg(ranks, k) for k in ks})
    return out


def grouped_metrics(
    ranks: np.ndarray, labels: np.ndarray, groups: Mapping[str | int, int], ks: list[int]
) -> dict[str | int, dict[str, float]]:
    """Ranking metrics of the users whose label equals each group's code.

    Args:
        ranks: (U,) target ranks.
        labels: (U,) group code of each user (e.g. the bucket of its target).
        groups: output key -> code, e.g. ``{"warm": 0, "median": 1, "cold": 2}``.
        ks: cut-offs.
    Returns:
        ``{key: {"HR@K": ..., "NDCG@K": ..., "users": n}}``; metrics are NaN for an empty group.
    """
    ranks = np.asarray(ranks)
    labels = np.asarray(labels)
    out: dict[str | int, dict[str, float]] = {}
    for key, code in groups.items():
        sel = ranks[labels == code]
        row = ranking_metrics(sel, ks)
        row["users"] = len(sel)
        out[key] = row
    return out


def coverage(topk: np.ndarray, k: int, num_items: int) -> float:
    """Coverage@K = |union of every user's top-K| / N.

    Args:
        topk: (U, K_max) item ids, best first; 0 marks an empty slot and is never counted.
        k: cut-off (<= K_max).
        num_items: N.
    """
    items = np.unique(np.asarray(topk)[:, :k])
    return float(np.count_nonzero(items)) / num_items if num_items else float("nan")


def tail_coverage(topk: np.ndarray, k: int, is_head: np.ndarray) -> float:
    """Tail Coverage@K = |union of top-K lists ∩ tail items| / |tail items|.

    Args:
        topk: (U, K_max) item ids, 0 = empty slot.
        is_head: (N+1,) bool; tail items are ids 1..N with ``is_head`` False.
    """
    is_tail = ~np.asarray(is_head, dtype=bool)
    is_tail[0] = False
    n_tail = int(is_tail.sum())
    if n_tail == 0:
        return float("nan")
    items = np.unique(np.asarray(topk)[:, :k])
    return float(is_tail[items].sum()) / n_tail


def summarize(
    ranks: np.ndarray,
    targets: np.ndarray,
    ks: list[int],
    num_items: int,
    item_stats: ItemStats | None = None,
    topk: np.ndarray | None = None,
) -> dict[str, dict]:
    """Every aggregate the evaluator reports, from per-user ranks (and top-K lists).

    Args:
        ranks: (U,) int64 target ranks (``num_items`` = a miss).
        targets: (U,) int64 target item ids.
        ks: cut-offs.
        num_items: N.
        item_stats: gives target buckets, warm/median/cold groups and head/tail; without it
            only the overall metrics and Coverage@K are computed.
        topk: (U, K_max) top-K lists for coverage; ``None`` skips coverage.
    Returns:
        dict with keys ``overall``, ``by_bucket`` ({1..B: row}), ``by_group`` (warm/median/cold),
        ``head_tail`` (head/tail), ``by_popularity`` (FAERec's groups of the target's count over
        whole sequences: ``1-4``, ``5-9``, ``10-19``, ``20-49``, ``50+``) and ``coverage``
        (``Coverage@K``, ``TailCoverage@K``).
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    out: dict[str, dict] = {
        "overall": ranking_metrics(ranks, ks),
        "by_bucket": {},
        "by_group": {},
        "head_tail": {},
        "by_popularity": {},
        "coverage": {},
    }
    if item_stats is not None:
        if item_stats.num_items != num_items:
            raise ValueError(f"item_stats covers {item_stats.num_items} items but the scores cover {num_items}")
        buckets = {b: b for b in range(1, item_stats.num_buckets + 1)}
        out["by_bucket"] = grouped_metrics(ranks, item_stats.bucket[targets], buckets, ks)
        out["by_group"] = grouped_metrics(
            ranks, item_stats.group[targets], {g: i for i, g in enumerate(GROUP_NAMES)}, ks
        )
        head = item_stats.is_head[targets].astype(np.int64)
        out["head_tail"] = grouped_metrics(ranks, head, {"head": 1, "tail": 0}, ks)
        labels = {name: i for i, name in enumerate(popularity_bin_labels())}
        out["by_popularity"] = grouped_metrics(ranks, popularity_bin(item_stats.full_frequency[targets]), labels, ks)
    if topk is not None:
        kmax = topk.shape[1]
        for k in ks:
            if k <= kmax:
                out["coverage"][f"Coverage@{k}"] = coverage(topk, k, num_items)
        if item_stats is not None:
            for k in ks:
                if k <= kmax:
                    out["coverage"][f"TailCoverage@{k}"] = tail_coverage(topk, k, item_stats.is_head)
    return out
