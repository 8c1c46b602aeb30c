"""CITIES' data: the contexts of every item occurrence in the training sequences, the
head/tail split, and the batches of head-item contexts phase ``infer`` trains on."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from padrec.data.protocols import Split
from padrec.methods._longtail_common import (
    csr_by_owner,
    head_by_fraction,
    item_frequency,
    shard,
    training_sequences,
)
from padrec.methods.batches import BatchSettings


def item_contexts(sequences: dict[int, np.ndarray], num_items: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One context per item occurrence (official ``preprocess.make_context``).

    The context of the item at position t of a sequence is ``seq[t-c:t]`` left-padded to c,
    the mask token N+1, and ``seq[t+1:t+1+c]`` right-padded to c. Occurrences whose window
    ``seq[t-c:t+1+c]`` holds fewer than 3 items (the item and at most one neighbour) give none.

    Returns:
        contexts: (M, 2c+1) int64; items: (M,) int64, the item each context belongs to.
    """
    mask = num_items + 1
    rows: list[np.ndarray] = []
    owners: list[int] = []
    for seq in sequences.values():
        n = len(seq)
        for t in range(n):
            lo, hi = max(0, t - size), min(n, t + 1 + size)
            if hi - lo <= 2:
                continue
            row = np.zeros(2 * size + 1, dtype=np.int64)
            row[size - (t - lo) : size] = seq[lo:t]
            row[size] = mask
            row[size + 1 : size + 1 + (hi - t - 1)] = seq[t + 1 : hi]
            rows.append(row)
            owners.append(int(seq[t]))
    if not rows:
        return np.zeros((0, 2 * size + 1), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.stack(rows), np.asarray(owners, dtype=np.int64)


@dataclass
class ItemContexts:
    """Contexts grouped by item: item i's are ``contexts[indptr[i]:indptr[i+1]]``.

    Attributes:
        contexts: (M, 2c+1) int64 ids (0 padding, N+1 the mask token).
        indptr: (N+2,) int64.
        head: (N+1,) bool, the head items (row 0 False).
        frequency: (N+1,) int64 training interactions.
    """

    contexts: torch.Tensor
    indptr: torch.Tensor
    head: np.ndarray
    frequency: np.ndarray

    @property
    def counts(self) -> torch.Tensor:
        """(N+1,) contexts per item."""
        return self.indptr[1:] - self.indptr[:-1]

    def items(self, head: bool) -> torch.Tensor:
        """The head (or tail) items with at least one context, ascending -> (n,) int64."""
        has = self.counts.numpy() > 0
        sel = has & (self.head if head else ~self.head)
        sel[0] = False
        return torch.from_numpy(np.flatnonzero(sel)).long()


def build_item_contexts(
    split: Split, num_items: int, size: int, head_fraction: float, tail_max_frequency: int = 0
) -> ItemContexts:
    """The contexts of every item in ``split``'s training sequences and the head/tail split:
    the top ``head_fraction`` of items by training frequency are head (the paper's Pareto
    rule), or, with ``tail_max_frequency`` > 0, every item with more interactions than that
    (the official code's ``FREQ_LBOUND``)."""
    sequences = training_sequences(split)
    frequency = item_frequency(sequences, num_items)
    if tail_max_frequency > 0:
        head = frequency > tail_max_frequency
        head[0] = False
    else:
        head = head_by_fraction(frequency, head_fraction)
    contexts, owners = item_contexts(sequences, num_items, size)
    order, indptr = csr_by_owner(owners, num_items + 1)
    return ItemContexts(torch.from_numpy(contexts[order]), torch.from_numpy(indptr), head, frequency)


@dataclass
class ContextBatch:
    """K contexts of each of B head items.

    Attributes:
        contexts: (B, K, 2c+1) int64.
        items: (B,) int64, the items whose embeddings F_φ must infer.
    """

    contexts: torch.Tensor
    items: torch.Tensor

    def to(self, device: torch.device | str) -> ContextBatch:
        return ContextBatch(self.contexts.to(device), self.items.to(device))


class HeadContextBatches:
    """Few-shot batches of head items (official ``Utils.get_train_batch``): each step draws
    K ~ U{1..max_shots}, then ``batch_size`` head items uniformly with replacement and K of
    each item's contexts uniformly with replacement. An epoch has ceil(#head items /
    batch_size) steps; processes and micro-batches take disjoint rows of each global batch."""

    def __init__(self, data: ItemContexts, settings: BatchSettings, max_shots: int) -> None:
        self.data, self.settings, self.max_shots = data, settings, max_shots
        self.head = data.items(head=True)
        if len(self.head) == 0:
            raise ValueError("CITIES: no head item has a context in the training sequences")

    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.head) / self.settings.batch_size))

    def epoch(self, generator: torch.Generator) -> Iterator[list[ContextBatch]]:
        s, d = self.settings, self.data
        for _ in range(self.steps_per_epoch()):
            k = int(torch.randint(1, self.max_shots + 1, (1,), generator=generator))
            items = self.head[torch.randint(len(self.head), (s.batch_size,), generator=generator)]
            start, count = d.indptr[items], d.counts[items]
            pick = (torch.rand(s.batch_size, k, generator=generator) * count.unsqueeze(1)).long()
            rows = start.unsqueeze(1) + pick.clamp_max(count.unsqueeze(1) - 1)
            parts = shard(torch.arange(s.batch_size), s.rank, s.world_size, s.accumulation)
            yield [ContextBatch(d.contexts[rows[p]], items[p]) for p in parts if len(p)]
