"""Item statistics used by evaluation groups and frequency-aware models.

Training frequency, equal-mass frequency buckets (bucket 1 = warmest), warm/median/cold
groups and head/tail membership.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from padrec.data.dataset import SequenceDataset

GROUP_NAMES = ("warm", "median", "cold")


@dataclass
class ItemStats:
    """Per-item statistics; every array has N+1 rows (row 0 = padding).

    Attributes:
        train_frequency: interactions of each item in the training part of every sequence.
        full_frequency: interactions over whole sequences.
        bucket: 1..B by training frequency, each bucket holding about 1/B of the training
            interaction mass (1 = warmest); 0 for padding.
        bucket_bounds: list of (min_freq, max_freq, n_items, mass) per bucket.
        group: 0 = warm, 1 = median, 2 = cold (see ``compute_item_stats``); -1 for padding.
        is_head: True for the ``head_fraction`` most popular items.
    """

    train_frequency: np.ndarray
    full_frequency: np.ndarray
    bucket: np.ndarray
    num_buckets: int
    bucket_bounds: list[tuple[int, int, int, int]]
    group: np.ndarray
    is_head: np.ndarray

    @property
    def num_items(self) -> int:
        return len(self.train_frequency) - 1


def frequency_buckets(freq: np.ndarray, num_buckets: int) -> np.ndarray:
    """Cut items (ids 1..N of ``freq``) into ``num_buckets`` buckets of about equal mass.

    Items are sorted by frequency, warmest first (ties by id, stable); an item goes to bucket
    ``floor(B * mass_before / total) + 1`` where ``mass_before`` is the interaction mass of
    the items ranked above it. Returns an int64 array of N+1 entries, 0 for padding.
    """
    n = len(freq) - 1
    bucket = np.zeros(n + 1, dtype=np.int64)
    f = freq[1:].astype(np.float64)
    total = f.sum()
    order = np.argsort(-f, kind="stable")
    if total <= 0:
        bucket[1:] = num_buckets
        return bucket
    mass_before = np.concatenate([[0.0], np.cumsum(f[order])[:-1]])
    b = np.floor(num_buckets * mass_before / total).astype(np.int64) + 1
    b = np.minimum(b, num_buckets)
    bucket[order + 1] = b
    # Never-seen items are the coldest.
    bucket[1:][f == 0] = num_buckets
    return bucket


def compute_item_stats(
    dataset: SequenceDataset,
    num_buckets: int = 10,
    head_fraction: float = 0.2,
    head_basis: Literal["train", "full"] = "train",
    train_holdout: int = 2,
    group_buckets: tuple[int, int] = (3, 7),
) -> ItemStats:
    """Compute :class:`ItemStats` for ``dataset``.

    Args:
        num_buckets: B, the number of equal-mass frequency buckets.
        head_fraction: share of items (by popularity rank) counted as head.
        head_basis: count popularity for head/tail over training parts (``train``) or whole
            sequences (``full``, FAERec's choice).
        train_holdout: items held out at the end of each sequence (2 under leave-one-out
            with a validation item) when counting training frequency.
        group_buckets: (last warm bucket, last median bucket): warm = buckets 1..a,
            median = a+1..b, cold = b+1..B.
    """
    n = dataset.num_items
    train_freq = np.zeros(n + 1, dtype=np.int64)
    full_freq = np.zeros(n + 1, dtype=np.int64)
    for seq in dataset.sequences:
        np.add.at(full_freq, seq, 1)
        part = seq[:-train_holdout] if train_holdout > 0 else seq
        if len(part):
            np.add.at(train_freq, part, 1)
    train_freq[0] = 0
    full_freq[0] = 0
    bucket = frequency_buckets(train_freq, num_buckets)
    bounds = []
    for b in range(1, num_buckets + 1):
        sel = bucket == b
        sel[0] = False
        fr = train_freq[sel]
        bounds.append((int(fr.min()) if len(fr) else 0, int(fr.max()) if len(fr) else 0, int(sel.sum()), int(fr.sum())))
    a, m = group_buckets
    group = np.full(n + 1, -1, dtype=np.int64)
    group[1:] = np.where(bucket[1:] <= a, 0, np.where(bucket[1:] <= m, 1, 2))
    pop = train_freq if head_basis == "train" else full_freq
    order = np.argsort(-pop[1:], kind="stable")
    n_head = int(round(head_fraction * n))
    is_head = np.zeros(n + 1, dtype=bool)
    is_head[order[:n_head] + 1] = True
    return ItemStats(train_freq, full_freq, bucket, num_buckets, bounds, group, is_head)
