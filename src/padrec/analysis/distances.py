"""Pairwise item distances and the near / far distance distributions (PAD Fig. 3).

The question of Fig. 3: do item pairs that are close (or far) in the ID-embedding space
stay close (or far) in the text-embedding space? We take item pairs, order them by their
distance under the reference (ID) table, keep the nearest and the farthest ``fraction``
(10%) and compare how the two groups' distances are distributed in every space.

Distances of different tables are not on one scale, so each space's distances are divided
by that space's mean distance over the same pairs (for random pairs this estimates the mean
pairwise distance of the space); 1.0 means "as far apart as a typical pair".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import mannwhitneyu

Distance = Literal["euclidean", "cosine"]
_CHUNK_ELEMENTS = 1 << 23  # values per chunk when gathering rows (~64 MB of float64)


def as_numpy_table(emb: Any, name: str = "table") -> np.ndarray:
    """An (N+1)×d table (torch tensor or array-like) as a float32/float64 numpy array on the CPU.

    float64 input stays float64, anything else becomes float32 (no copy where possible);
    distances are computed in float64 chunk by chunk. Raises if the table is not 2-D.
    """
    if isinstance(emb, torch.Tensor):
        emb = emb.detach().cpu()
        emb = emb.numpy() if emb.dtype in (torch.float32, torch.float64) else emb.float().numpy()
    arr = np.asarray(emb)
    if arr.dtype != np.float64:
        arr = arr.astype(np.float32, copy=False)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected an (N+1)×d embedding table, got shape {arr.shape}")
    return arr


def check_pairs(pairs: Any, num_rows: int, name: str = "pairs") -> np.ndarray:
    """``pairs`` as a (P, 2) int64 array with ids in 1..num_rows-1 (0 is padding)."""
    p = np.asarray(pairs, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (P, 2), got {p.shape}")
    if len(p) and (p.min() < 1 or p.max() >= num_rows):
        raise ValueError(f"{name}: item ids must lie in 1..{num_rows - 1}, got {p.min()}..{p.max()}")
    return p


def pair_distances(emb: Any, pairs: Any, distance: Distance = "euclidean") -> np.ndarray:
    """Distance between the two items of each pair under one embedding table.

    Args:
        emb: (N+1)×d table (row = item id).
        pairs: (P, 2) item ids.
        distance: ``euclidean`` (L2 norm of the difference) or ``cosine`` (1 − cosine
            similarity; a zero vector counts as similarity 0, distance 1).
    Returns:
        (P,) float64 distances.
    """
    table = as_numpy_table(emb)
    p = check_pairs(pairs, len(table))
    if distance not in ("euclidean", "cosine"):
        raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
    out = np.empty(len(p), dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(table.shape[1], 1))
    for lo in range(0, len(p), step):
        a = table[p[lo : lo + step, 0]].astype(np.float64)
        b = table[p[lo : lo + step, 1]].astype(np.float64)
        if distance == "euclidean":
            out[lo : lo + step] = np.sqrt(((a - b) ** 2).sum(1))
        else:
            denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            dot = (a * b).sum(1)
            sim = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
            out[lo : lo + step] = 1.0 - sim
    return out


def sample_item_pairs(num_items: int, num_pairs: int, seed: int = 0) -> np.ndarray:
    """``num_pairs`` random pairs of distinct items, drawn uniformly from ids 1..N with a seed.

    Pairs are unordered and distinct (no pair twice, ``i != j``); when ``num_pairs`` exceeds
    the N(N−1)/2 possible pairs, every pair is returned once.
    Returns:
        (M, 2) int64 with ``pairs[:, 0] < pairs[:, 1]``, in sampling order.
    """
    if num_items < 2:
        raise ValueError(f"need at least 2 items to form pairs, got N={num_items}")
    total = num_items * (num_items - 1) // 2
    rng = np.random.default_rng(seed)
    if num_pairs >= total / 2:
        # Dense case: enumerate every pair and take a random subset (rejection would crawl).
        i, j = np.triu_indices(num_items, k=1)
        pick = rng.permutation(total)[: min(num_pairs, total)]
        return np.stack([i[pick] + 1, j[pick] + 1], axis=1).astype(np.int64)
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < num_pairs:
        need = num_pairs - len(keys)
        a = rng.integers(1, num_items + 1, size=2 * need + 16)
        b = rng.integers(1, num_items + 1, size=2 * need + 16)
        keep = a != b
        lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        keys = np.concatenate([keys, lo * (num_items + 1) + hi])
        # Drop repeated pairs, keeping each pair's first draw (sampling order is preserved).
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]
    keys = keys[:num_pairs]
    return np.stack([keys // (num_items + 1), keys % (num_items + 1)], axis=1).astype(np.int64)


def split_near_far(reference_distances: np.ndarray, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the nearest and the farthest ``fraction`` of pairs by a reference distance.

    Pairs are sorted by distance (ties by index, stable); with ``k = max(1, floor(fraction·P))``
    the ``near`` group is the first k and the ``far`` group the last k.
    Returns:
        (near_idx, far_idx), each (k,) int64 indices into ``reference_distances``.
    """
    d = np.asarray(reference_distances, dtype=np.float64)
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must lie in (0, 0.5], got {fraction}")
    if len(d) < 2:
        raise ValueError(f"need at least 2 pairs to split, got {len(d)}")
    k = max(1, int(np.floor(fraction * len(d))))
    order = np.argsort(d, kind="stable")
    return order[:k].astype(np.int64), order[-k:].astype(np.int64)


def summary_stats(x: np.ndarray) -> dict[str, float]:
    """count, mean, std, min, q05, q25, median, q75, q95, max of a 1-D sample."""
    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return {"count": 0}
    q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "count": len(x),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "q05": float(q[0]),
        "q25": float(q[1]),
        "median": float(q[2]),
        "q75": float(q[3]),
        "q95": float(q[4]),
        "max": float(x.max()),
    }


def overlap_coefficient(x: np.ndarray, y: np.ndarray, bins: int = 50) -> float:
    """Overlap of two samples' histograms: Σ_bins min(p_x, p_y) over shared equal-width bins.

    ``p`` are the bin probabilities; 1 = identical histograms, 0 = disjoint supports.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not len(x) or not len(y):
        return float("nan")
    lo = min(x.min(), y.min())
    hi = max(x.max(), y.max())
    if hi <= lo:
        return 1.0
    edges = np.linspace(lo, hi, bins + 1)
    px = np.histogram(x, edges)[0] / len(x)
    py = np.histogram(y, edges)[0] / len(y)
    return float(np.minimum(px, py).sum())


def separation_auc(near: np.ndarray, far: np.ndarray) -> float:
    """P(a far pair's distance > a near pair's distance) + ½·P(equal) (Mann–Whitney U / (n·m)).

    1 = the groups are fully separated, 0.5 = indistinguishable.
    """
    near = np.asarray(near, dtype=np.float64)
    far = np.asarray(far, dtype=np.float64)
    if not len(near) or not len(far):
        return float("nan")
    u = mannwhitneyu(far, near, alternative="two-sided").statistic
    return float(u / (len(near) * len(far)))


def distance_distributions(
    tables: Mapping[str, Any],
    pairs: Any,
    reference: str = "id",
    fraction: float = 0.1,
    distance: Distance = "euclidean",
    return_samples: bool = False,
    bins: int = 50,
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Distributions of the near / far reference-distance pairs' distances in every space.

    Args:
        tables: ``{space: (N+1)×d table}``, e.g. ``{"id": id_table, "text": text_table}``;
            all with the same number of rows.
        pairs: (M, 2) item pairs (e.g. :func:`sample_item_pairs`).
        reference: the space whose distances define the near / far groups.
        fraction: share of pairs in each group (0.1 = top and bottom 10%).
        distance: ``euclidean`` or ``cosine``.
        return_samples: also return the normalised distances of both groups per space.
        bins: histogram bins of the overlap coefficient.
    Returns:
        dict with ``spaces``, ``reference``, ``fraction``, ``distance``, ``num_pairs``,
        ``group_size``, ``normalizer`` (mean distance of each space over the pairs),
        ``stats`` ({space: {"near"|"far"|"all": summary_stats}} of normalised distances),
        ``overlap`` ({space: {"overlap": histogram overlap coefficient, "auc": separation
        AUC}}) and ``rank_correlation`` ({space: Kendall's tau of its distances against the
        reference's over all pairs}); with ``return_samples`` a second value
        ``{space: {"near": (k,), "far": (k,)}}``.
    """
    from scipy.stats import kendalltau

    if reference not in tables:
        raise ValueError(f"reference space {reference!r} is not among the tables {list(tables)}")
    arrays = {name: as_numpy_table(t, name) for name, t in tables.items()}
    rows = {name: len(a) for name, a in arrays.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(f"tables have different numbers of rows (items): {rows}")
    p = check_pairs(pairs, next(iter(rows.values())))
    dists = {name: pair_distances(a, p, distance) for name, a in arrays.items()}
    near_idx, far_idx = split_near_far(dists[reference], fraction)
    result: dict[str, Any] = {
        "spaces": list(arrays),
        "reference": reference,
        "fraction": fraction,
        "distance": distance,
        "num_pairs": len(p),
        "group_size": len(near_idx),
        "normalizer": {},
        "stats": {},
        "overlap": {},
        "rank_correlation": {},
    }
    samples: dict[str, dict[str, np.ndarray]] = {}
    for name, d in dists.items():
        mean = float(d.mean())
        norm = d / mean if mean > 0 else d
        near, far = norm[near_idx], norm[far_idx]
        samples[name] = {"near": near, "far": far}
        result["normalizer"][name] = mean
        result["stats"][name] = {"near": summary_stats(near), "far": summary_stats(far), "all": summary_stats(norm)}
        result["overlap"][name] = {"overlap": overlap_coefficient(near, far, bins), "auc": separation_auc(near, far)}
        tau = kendalltau(dists[reference], d).statistic if len(d) > 1 else float("nan")
        result["rank_correlation"][name] = float(tau)
    return (result, samples) if return_samples else result
