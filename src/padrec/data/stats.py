"""Item statistics used by evaluation groups and frequency-aware models.

Training frequency, equal-mass frequency buckets (bucket 1 = warmest), warm/median/cold
groups and head/tail membership.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from padrec.data.dataset import SequenceDataset
from padrec.data.errors import DataError

GROUP_NAMES = ("warm", "median", "cold")


#: Lower edges of FAERec's popularity groups of a target item (interactions over whole
#: sequences): 1-4, 5-9, 10-19, 20-49, 50+.
POPULARITY_BIN_EDGES: tuple[int, ...] = (1, 5, 10, 20, 50)


def popularity_bin_labels(edges: tuple[int, ...] = POPULARITY_BIN_EDGES) -> list[str]:
    """Names of the groups ``edges`` define, e.g. ``["1-4", ..., "50+"]``."""
    return [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]


def popularity_bin(frequency: np.ndarray, edges: tuple[int, ...] = POPULARITY_BIN_EDGES) -> np.ndarray:
    """Index into :func:`popularity_bin_labels` of each count (U,) -> (U,) int64; -1 below ``edges[0]``."""
    return np.searchsorted(np.asarray(edges), np.asarray(frequency), side="right").astype(np.int64) - 1


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

    def to_json(self) -> dict:
        """Plain lists and numbers (for a run's serving file); :meth:`from_json` inverts it."""
        out = {}
        for name in ("train_frequency", "full_frequency", "bucket", "group", "is_head"):
            out[name] = getattr(self, name).tolist()
        out["num_buckets"] = int(self.num_buckets)
        out["bucket_bounds"] = [list(map(int, b)) for b in self.bucket_bounds]
        return out

    @classmethod
    def from_json(cls, data: dict) -> ItemStats:
        """Rebuild from :meth:`to_json`'s output."""
        return cls(
            train_frequency=np.asarray(data["train_frequency"], dtype=np.int64),
            full_frequency=np.asarray(data["full_frequency"], dtype=np.int64),
            bucket=np.asarray(data["bucket"], dtype=np.int64),
            num_buckets=int(data["num_buckets"]),
            bucket_bounds=[tuple(b) for b in data["bucket_bounds"]],
            group=np.asarray(data["group"], dtype=np.int64),
            is_head=np.asarray(data["is_head"], dtype=bool),
        )


def frequency_buckets(freq: np.ndarray, num_buckets: int) -> np.ndarray:
    """Cut items (ids 1..N of ``freq``) into ``num_buckets`` buckets of about equal mass.

    The PAD release's cut: items sorted by frequency, warmest first (ties by ascending id);
    bucket 1 takes items until its mass reaches ``total / B``, then bucket 2 starts afresh,
    and so on; bucket B takes every remaining item. The release hard-codes the resulting
    positions (Prime Pantry: ``[0, 35, 100, 205, 361, 585, 898, 1357, 2074, 3348, 8348]`` in
    ``data_utils/dataset.py``); this rule reproduces them from ``Prime_Pantry_fre.csv``.
    Items never seen in training go to bucket B. Returns an int64 array of N+1 entries, 0 for
    padding. With fewer items than B, fewer buckets are filled (:func:`compute_item_stats`
    refuses such a B); ``num_buckets < 1`` is a :class:`DataError`.
    """
    _check_num_buckets(num_buckets)
    n = len(freq) - 1
    bucket = np.zeros(n + 1, dtype=np.int64)
    f = np.asarray(freq[1:], dtype=np.int64)
    total = int(f.sum())
    if n == 0:
        return bucket
    if total <= 0:
        bucket[1:] = num_buckets
        return bucket
    order = np.argsort(-f, kind="stable")
    # Integer arithmetic: a bucket closes at the first item where B * (its mass) >= total.
    scaled = num_buckets * np.cumsum(f[order])
    cuts = []
    base = 0
    for _ in range(num_buckets - 1):
        pos = int(np.searchsorted(scaled, base + total, side="left"))
        if pos >= n - 1:
            break
        cuts.append(pos + 1)
        base = int(scaled[pos])
    ranked = np.searchsorted(np.asarray(cuts, dtype=np.int64), np.arange(n), side="right") + 1
    bucket[order + 1] = ranked
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

    Raises :class:`DataError` when ``num_buckets`` is below 1 or above the number of items
    with training interactions, or ``head_fraction`` is not strictly between 0 and 1.

    Args:
        num_buckets: B, the number of equal-mass frequency buckets.
        head_fraction: share of items counted as head: the ``floor(head_fraction * M)`` most
            popular of the M items that occur (ties by id), as FAERec's ``ht_process.py``.
        head_basis: count popularity for head/tail over training parts (``train``) or whole
            sequences (``full``, FAERec's choice).
        train_holdout: items held out at the end of each sequence (2 under leave-one-out
            with a validation item) when counting training frequency.
        group_buckets: (last warm bucket, last median bucket): warm = buckets 1..a,
            median = a+1..b, cold = b+1..B. Neither the PAD paper's text nor its release
            defines the warm/median/cold groups of its Fig. 2 (the release's only three-way
            split is MIND-specific: training frequency 1-6 / 7-50 / >50 in
            ``BuildTrainDataset2``); padrec's documented choice is (3, 7), i.e. about 30% / 40%
            / 30% of the training interactions.
    """
    _check_num_buckets(num_buckets, f"dataset {dataset.name!r}: ")
    if isinstance(head_fraction, bool) or not isinstance(head_fraction, (int, float)) or not 0 < head_fraction < 1:
        raise DataError(
            f"dataset {dataset.name!r}: head_fraction (stats.head_fraction) = {head_fraction!r}: expected a "
            "number strictly between 0 and 1, the share of the most popular items counted as head (e.g. 0.2)"
        )
    if head_basis not in ("train", "full"):
        raise DataError(
            f"dataset {dataset.name!r}: head_basis (stats.head_basis) = {head_basis!r}: expected 'train' or 'full'"
        )
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
    trained = int((train_freq[1:] > 0).sum())
    if num_buckets > trained:
        raise DataError(
            f"dataset {dataset.name!r}: num_buckets (stats.num_buckets, --buckets) = {num_buckets} is more than "
            f"the {trained:,} items with training interactions; expected a whole number from 1 to {trained} "
            "(each bucket needs at least one item)"
        )
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
    # FAERec's rule (ht_process.py): floor(fraction x number of items that occur), ties by id.
    n_head = int(head_fraction * int((pop[1:] > 0).sum()))
    is_head = np.zeros(n + 1, dtype=bool)
    is_head[order[:n_head] + 1] = True
    return ItemStats(train_freq, full_freq, bucket, num_buckets, bounds, group, is_head)


def _check_num_buckets(num_buckets: object, where: str = "") -> None:
    """:class:`DataError` unless ``num_buckets`` is a whole number >= 1 (``where`` starts the message)."""
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, (int, np.integer)) or num_buckets < 1:
        raise DataError(
            f"{where}num_buckets (stats.num_buckets, --buckets) = {num_buckets!r}: expected a whole number >= 1 "
            "(the number of equal-mass frequency buckets, e.g. 10)"
        )
