"""MELT's data: head/tail users and items, head users' windows, every item's contexts, and
the batches of phase ``melt`` (training windows plus a share of head users and head items)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from padrec.data.protocols import Split, left_pad
from padrec.methods._longtail_common import csr_by_owner, item_frequency, shard, training_sequences
from padrec.methods.batches import BatchSettings, TrainBatch


def melt_item_contexts(sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The official ``save_user_item_context``: for the item at position t of a sequence, the
    window ``seq[..t]`` ending with it and, when the sequence has more than one item, the
    reversed ``seq[t..]`` ending with it (``seq[t+L-1], ..., seq[t+1], seq[t]``), each the
    last ``max_len`` items, left-padded.

    Returns:
        contexts: (M, max_len) int64; items: (M,) int64, the item ending each context.
    """
    rows, owners = [], []
    for seq in sequences:
        for t, item in enumerate(seq.tolist()):
            rows.append(left_pad(seq[: t + 1], max_len))
            owners.append(item)
            if len(seq) > 1:
                rows.append(left_pad(seq[t : t + max_len][::-1], max_len))
                owners.append(item)
    if not rows:
        return np.zeros((0, max_len), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.stack(rows), np.asarray(owners, dtype=np.int64)


@dataclass
class MELTData:
    """What phase ``melt`` trains on, from the training sequences.

    Attributes:
        user_threshold: T_u; users with at most T_u training items are tail.
        item_threshold: T_i; items with at most T_i training interactions are tail.
        head_windows: (U_h, L) the last L training items of each head user, left-padded.
        head_items: (I_h,) head items with a context; tail_items: (I_t,) tail items with one.
        occurrences: (N+1,) n_i, training interactions of each item.
        contexts: (M, L) every context, grouped by item: item i's are ``contexts[indptr[i]:indptr[i+1]]``.
        indptr: (N+2,) int64.
        num_head_users, num_tail_users: users on each side.
    """

    user_threshold: float
    item_threshold: float
    head_windows: torch.Tensor
    head_items: torch.Tensor
    tail_items: torch.Tensor
    occurrences: torch.Tensor
    contexts: torch.Tensor
    indptr: torch.Tensor
    num_head_users: int
    num_tail_users: int

    @property
    def counts(self) -> torch.Tensor:
        """(N+1,) contexts per item."""
        return self.indptr[1:] - self.indptr[:-1]


def build_melt_data(
    split: Split, num_items: int, max_len: int, head_user_fraction: float, head_item_fraction: float
) -> MELTData:
    """Head/tail users and items by the official ``split_head_tail`` (quantile thresholds of
    the training lengths and item frequencies), the head users' windows and the contexts."""
    sequences = training_sequences(split)
    seqs = list(sequences.values())
    lengths = np.asarray([len(s) for s in seqs], dtype=np.float64)
    user_threshold = float(np.quantile(lengths, 1.0 - head_user_fraction))
    head_users = [s for s in seqs if len(s) > user_threshold]
    freq = item_frequency(sequences, num_items)
    seen = freq[1:][freq[1:] > 0]
    item_threshold = float(np.quantile(seen, 1.0 - head_item_fraction)) if len(seen) else 0.0
    contexts, owners = melt_item_contexts(seqs, max_len)
    order, indptr = csr_by_owner(owners, num_items + 1)
    has = np.diff(indptr) > 0
    has[0] = False
    head = freq > item_threshold
    windows = np.stack([left_pad(s, max_len) for s in head_users]) if head_users else np.zeros((0, max_len), np.int64)
    return MELTData(
        user_threshold=user_threshold,
        item_threshold=item_threshold,
        head_windows=torch.from_numpy(windows),
        head_items=torch.from_numpy(np.flatnonzero(has & head)).long(),
        tail_items=torch.from_numpy(np.flatnonzero(has & ~head)).long(),
        occurrences=torch.from_numpy(freq),
        contexts=torch.from_numpy(contexts[order]),
        indptr=torch.from_numpy(indptr),
        num_head_users=len(head_users),
        num_tail_users=len(seqs) - len(head_users),
    )


@dataclass
class MELTBatch:
    """One micro-batch of phase ``melt``.

    Attributes:
        inputs, targets, users: the next-item windows, as :class:`TrainBatch`.
        user_full: (U, L) head users' windows; user_recent: (U, L) their most recent l items
            (l ~ U{1..⌈T_u⌉−1}, at least 1), left-padded.
        items: (I,) head items; item_count: (I,) their n_i.
        contexts: (C, L) a few contexts of each of them; owner: (C,) index into ``items``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor
    user_full: torch.Tensor
    user_recent: torch.Tensor
    items: torch.Tensor
    item_count: torch.Tensor
    contexts: torch.Tensor
    owner: torch.Tensor

    @property
    def rec(self) -> TrainBatch:
        """The next-item part."""
        return TrainBatch(self.inputs, self.targets, self.users)

    def to(self, device: torch.device | str) -> MELTBatch:
        return MELTBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


class MELTBatches:
    """Phase ``melt``'s batches (official ``MELT_SASRec.Trainer.train``): every step takes the
    next ``batch_size`` shuffled training windows, the next 1/steps of the shuffled head users
    (each with a recent subsequence of random length) and of the shuffled head items (each
    with n ~ U{1..min(|C_i|, ⌊T_i⌋)} of its contexts, drawn without replacement), so an epoch
    covers every window, head user and head item once. Processes and micro-batches take
    disjoint rows of each part."""

    def __init__(self, split: Split, data: MELTData, settings: BatchSettings) -> None:
        if settings.batch_size < settings.world_size * settings.accumulation:
            raise ValueError(
                f"batch_size {settings.batch_size} is smaller than processes × accumulation steps "
                f"({settings.world_size} × {settings.accumulation})"
            )
        self.inputs = torch.from_numpy(split.train_inputs)
        self.targets = torch.from_numpy(split.train_targets)
        self.users = torch.from_numpy(split.train_users)
        self.data, self.settings = data, settings
        self.max_recent = max(1, math.ceil(data.user_threshold) - 1)
        self.max_few = max(1, math.floor(data.item_threshold))

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.inputs) / self.settings.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[list[MELTBatch]]:
        s, d = self.settings, self.data
        steps = self.steps_per_epoch()
        perm = torch.randperm(len(self.inputs), generator=generator)
        user_parts = torch.tensor_split(torch.randperm(len(d.head_windows), generator=generator), steps)
        item_parts = torch.tensor_split(d.head_items[torch.randperm(len(d.head_items), generator=generator)], steps)
        for b in range(steps):
            rows = perm[b * s.batch_size : (b + 1) * s.batch_size]
            short = s.world_size * s.accumulation - len(rows)
            if short > 0:
                rows = torch.cat([rows, perm[:short]])
            users, items = user_parts[b], item_parts[b]
            full = d.head_windows[users]
            recent_len = torch.randint(1, self.max_recent + 1, (len(users),), generator=generator)
            keep = torch.arange(full.shape[1]) >= full.shape[1] - recent_len.unsqueeze(1)
            recent = full * keep
            picks = self._contexts(items, generator)
            out = []
            shares = (shard(torch.arange(len(x)), s.rank, s.world_size, s.accumulation) for x in (rows, users, items))
            for r, u, i in zip(*shares):
                mine = [picks[j] for j in i.tolist()]
                sizes = torch.tensor([len(c) for c in mine], dtype=torch.long)
                ctx = torch.cat(mine) if mine else torch.zeros(0, dtype=torch.long)
                owner = torch.repeat_interleave(torch.arange(len(mine)), sizes)
                sel = rows[r]
                out.append(
                    MELTBatch(
                        self.inputs[sel],
                        self.targets[sel],
                        self.users[sel],
                        full[u],
                        recent[u],
                        items[i],
                        d.occurrences[items[i]],
                        d.contexts[ctx],
                        owner,
                    )
                )
            yield out

    def _contexts(self, items: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """For each head item, the rows of n ~ U{1..min(|C_i|, ⌊T_i⌋)} of its contexts."""
        d = self.data
        out = []
        for item in items.tolist():
            start, count = int(d.indptr[item]), int(d.counts[item])
            n = int(torch.randint(1, min(count, self.max_few) + 1, (1,), generator=generator))
            out.append(start + torch.randperm(count, generator=generator)[:n])
        return out
