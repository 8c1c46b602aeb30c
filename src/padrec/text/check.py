"""A human sanity check: for a few items, the most similar items by cosine of their text vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from padrec.text.errors import TextError


@dataclass
class Neighbours:
    """Nearest items of one query item.

    Attributes:
        item: internal id of the query item.
        ids: internal ids of the k nearest other items, most similar first.
        scores: their cosine similarities, same order.
    """

    item: int
    ids: list[int]
    scores: list[float]


def nearest_neighbours(matrix: torch.Tensor | np.ndarray, items: Sequence[int], k: int = 5) -> list[Neighbours]:
    """The ``k`` nearest items (cosine) of each query item.

    Args:
        matrix: (N+1) x D item vectors, row 0 padding.
        items: internal ids 1..N to query.
        k: neighbours per item.

    Padding, zero rows (items without text) and the query itself are never returned; ties
    are broken by the lower id, so the answer is deterministic.
    """
    m = torch.as_tensor(matrix, dtype=torch.float32)
    if m.ndim != 2:
        raise TextError(f"expected an (N+1) x D matrix, got shape {tuple(m.shape)}")
    n = m.shape[0] - 1
    bad = [i for i in items if not 1 <= int(i) <= n]
    if bad:
        raise TextError(f"item ids {bad[:5]} are outside 1..{n}")
    norms = m.norm(dim=1)
    unit = m / norms.clamp(min=1e-12).unsqueeze(1)
    usable = norms > 0
    usable[0] = False
    out: list[Neighbours] = []
    for i in items:
        i = int(i)
        scores = unit @ unit[i]  # N+1
        scores = torch.where(usable, scores, torch.full_like(scores, -float("inf")))
        scores[i] = -float("inf")
        kk = min(k, int(usable.sum()) - (1 if usable[i] else 0))
        if kk <= 0:
            out.append(Neighbours(i, [], []))
            continue
        # Stable order: by score descending, then id ascending.
        order = np.lexsort((np.arange(n + 1), -scores.numpy()))[:kk]
        out.append(Neighbours(i, [int(j) for j in order], [float(scores[j]) for j in order]))
    return out


def pick_items(num_items: int, count: int, seed: int = 0) -> list[int]:
    """``count`` distinct internal ids from 1..N, reproducibly sampled with ``seed``."""
    count = max(0, min(count, num_items))
    rng = np.random.default_rng(seed)
    return sorted(int(x) + 1 for x in rng.choice(num_items, size=count, replace=False))
