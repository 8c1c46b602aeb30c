"""Discrepancy between two item-embedding spaces (PAD Sec. 4.3, Fig. 6).

For every (history item, target item) pair of the evaluation sequences we measure the
distance of the two items under table A and under table B, and report Kendall's tau between
the two distance lists: tau = 1 when both tables order the pairs the same way, about 0 when
they are unrelated. Tau is reported over all pairs and per frequency bucket of the target
item (and of the history item).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from padrec.analysis.distances import Distance, as_numpy_table, check_pairs, pair_distances
from padrec.data.protocols import EvalSet
from padrec.data.stats import GROUP_NAMES


def history_target_pairs(
    eval_set: EvalSet,
    max_pairs: int | None = None,
    seed: int = 0,
    drop_repeats: bool = True,
) -> np.ndarray:
    """Every (history item, target item) pair of an evaluation set.

    Each non-padding item of each user's history window is paired with that user's target;
    an item occurring twice in a window gives two pairs (pairs are weighted by occurrence).

    Args:
        eval_set: histories (U, L) left-padded with 0 and targets (U,).
        max_pairs: keep at most this many pairs, drawn uniformly without replacement with
            ``seed`` (kept in their original order); ``None`` or 0 keeps all.
        seed: seed of that sample.
        drop_repeats: drop pairs whose history item is the target itself (distance 0 in
            every space, which would inflate tau).
    Returns:
        (P, 2) int64 array of ``[history_item, target_item]``, user by user, oldest first.
    """
    hist = np.asarray(eval_set.histories, dtype=np.int64)
    targets = np.asarray(eval_set.targets, dtype=np.int64)
    if hist.ndim != 2 or len(hist) != len(targets):
        raise ValueError(f"eval_set: histories {hist.shape} do not match targets {targets.shape}")
    tgt = np.broadcast_to(targets[:, None], hist.shape)
    keep = hist > 0
    if drop_repeats:
        keep &= hist != tgt
    pairs = np.stack([hist[keep], tgt[keep]], axis=1).astype(np.int64)
    if max_pairs and len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))
        pairs = pairs[pick]
    return pairs


def kendall_tau(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Kendall's tau-b of two equal-length samples: ``{"tau", "p_value", "pairs"}``.

    tau and p_value are NaN with fewer than 2 values or when either sample is constant.
    """
    n = len(x)
    if n < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return {"tau": float("nan"), "p_value": float("nan"), "pairs": n}
    res = kendalltau(x, y)
    return {"tau": float(res.statistic), "p_value": float(res.pvalue), "pairs": n}


def _by_label(da: np.ndarray, db: np.ndarray, labels: np.ndarray, keys: dict[Any, int]) -> dict[Any, dict[str, Any]]:
    return {key: kendall_tau(da[labels == code], db[labels == code]) for key, code in keys.items()}


def kendall_discrepancy(
    emb_a: Any,
    emb_b: Any,
    pairs: Any,
    buckets: Any | None = None,
    distance: Distance = "euclidean",
    groups: Any | None = None,
    by_history: bool = True,
    names: Sequence[str] = ("A", "B"),
) -> dict[str, Any]:
    """Kendall's tau between two tables' distances over item pairs, overall and per bucket.

    Args:
        emb_a: (N+1)×d table of model A (torch tensor or array; row = item id).
        emb_b: (N+1)×d' table of model B (d' may differ from d).
        pairs: (P, 2) ``[history_item, target_item]`` ids (:func:`history_target_pairs`).
        buckets: (N+1,) frequency bucket per item (``ItemStats.bucket``, 1..B, 0 = padding);
            ``None`` reports the overall tau only.
        distance: ``euclidean`` or ``cosine`` (the same for both tables).
        groups: optional (N+1,) warm/median/cold code per item (``ItemStats.group``, 0/1/2).
        by_history: also group by the bucket (and group) of the history item.
        names: display names of A and B, stored in the result.
    Returns:
        ``{"names", "distance", "num_pairs", "overall": {"tau", "p_value", "pairs"},
        "by_target_bucket": {b: {...}}, "by_history_bucket": {b: {...}},
        "by_target_group": {"warm": {...}, ...}, "by_history_group": {...}}``; bucket keys
        are ints 1..B, empty dicts where not computed.
    """
    a = as_numpy_table(emb_a, "emb_a")
    b = as_numpy_table(emb_b, "emb_b")
    if len(a) != len(b):
        raise ValueError(f"emb_a has {len(a)} rows but emb_b has {len(b)}: the tables must cover the same items")
    p = check_pairs(pairs, len(a))
    da = pair_distances(a, p, distance)
    db = pair_distances(b, p, distance)
    out: dict[str, Any] = {
        "names": list(names),
        "distance": distance,
        "num_pairs": len(p),
        "overall": kendall_tau(da, db),
        "by_target_bucket": {},
        "by_history_bucket": {},
        "by_target_group": {},
        "by_history_group": {},
    }
    if buckets is not None:
        bk = np.asarray(buckets, dtype=np.int64)
        if len(bk) != len(a):
            raise ValueError(f"buckets has {len(bk)} entries, expected N+1 = {len(a)}")
        keys = {int(x): int(x) for x in range(1, int(bk.max()) + 1)} if len(bk) > 1 else {}
        out["by_target_bucket"] = _by_label(da, db, bk[p[:, 1]], keys)
        if by_history:
            out["by_history_bucket"] = _by_label(da, db, bk[p[:, 0]], keys)
    if groups is not None:
        gr = np.asarray(groups, dtype=np.int64)
        if len(gr) != len(a):
            raise ValueError(f"groups has {len(gr)} entries, expected N+1 = {len(a)}")
        gkeys = {g: i for i, g in enumerate(GROUP_NAMES)}
        out["by_target_group"] = _by_label(da, db, gr[p[:, 1]], gkeys)
        if by_history:
            out["by_history_group"] = _by_label(da, db, gr[p[:, 0]], gkeys)
    return out
