"""LOAM's Niche Walk Augmentation (NWA): synthetic sessions from backward walks on the item
transition graph of the training windows, biased towards unpopular predecessors.

- Graph: an edge ``a → b`` for every distinct training transition (item ``a`` directly followed
  by ``b`` in a training window: input and target at one position). A head item's incoming
  edges are cut, once, to a random ``cap`` of them ("to make popular node have less edges";
  ``cap`` = the mean number of predecessors of an item, the release's ``all_mean`` rule).
- Per micro-batch, the walks run on the subgraph induced by the batch's items (inputs and
  targets): ``int(rows · aug_ratio)`` start items are drawn from the batch's targets; from each,
  ``walks_per_start`` walks step to a predecessor: with probability ``1 − α`` the least popular
  one (highest inverse training popularity), else a uniformly random one, until the walk has
  ``walk_len`` steps or no predecessor is left. A walk of at least 2 steps is a session (its
  visited items in time order) whose target is the start item; at most ``int(rows · aug_ratio)``
  of them, drawn at random, join the micro-batch as extra rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from padrec.data.protocols import Split
from padrec.methods.batches import BatchSettings, TrainBatch, WindowBatches


@dataclass
class LOAMBatch(TrainBatch):
    """A :class:`TrainBatch` whose last ``walks`` rows are niche-walk sessions (user index -1)."""

    walks: int = 0

    def to(self, device: torch.device | str) -> LOAMBatch:
        """The batch on ``device``."""
        return LOAMBatch(self.inputs.to(device), self.targets.to(device), self.users.to(device), self.walks)


@dataclass
class TransitionGraph:
    """Predecessor lists of the item transition graph in CSR form.

    Attributes:
        indptr: (N+2,) int64; the predecessors of item i are ``preds[indptr[i]:indptr[i+1]]``.
        preds: (E,) int64 predecessor ids, ascending within each item.
        popularity: (N+1,) training frequency (the walk prefers the smallest).
        cap: the in-degree head items were cut to.
    """

    indptr: np.ndarray
    preds: np.ndarray
    popularity: np.ndarray
    cap: int

    def predecessors(self, item: int) -> np.ndarray:
        """Ids of the items with an edge into ``item`` (ascending)."""
        return self.preds[self.indptr[item] : self.indptr[item + 1]]

    @property
    def num_edges(self) -> int:
        """E, the number of edges kept."""
        return int(self.preds.shape[0])


def training_transitions(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distinct transitions (input item, its target) of training windows.

    Args:
        inputs, targets: (T, L) int64 windows (0 = padding / no target).
    Returns:
        (E, 2) int64 ``(source, destination)`` pairs, sorted by destination then source.
    """
    keep = (inputs > 0) & (targets > 0)
    pairs = np.stack([inputs[keep], targets[keep]], axis=1).astype(np.int64)
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    pairs = np.unique(pairs, axis=0)
    return pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]


def build_transition_graph(
    inputs: np.ndarray,
    targets: np.ndarray,
    popularity: np.ndarray,
    is_head: np.ndarray,
    head_edge_cap: int = 0,
    seed: int = 220,
) -> TransitionGraph:
    """The NWA graph of the training windows (module docstring).

    Args:
        inputs, targets: (T, L) training windows of the split.
        popularity: (N+1,) training frequency of each item.
        is_head: (N+1,) bool head items (their in-edges are capped).
        head_edge_cap: the cap; 0 = ``round(mean in-degree)`` over items with a predecessor.
        seed: seed of the one-off random choice of the kept head edges.
    """
    n = len(popularity) - 1
    pairs = training_transitions(inputs, targets)
    degree = np.bincount(pairs[:, 1], minlength=n + 1) if len(pairs) else np.zeros(n + 1, dtype=np.int64)
    cap = head_edge_cap
    if cap == 0:
        cap = max(1, int(round(float(degree[degree > 0].mean())))) if len(pairs) else 1
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], np.cumsum(degree)])
    kept = []
    for item in range(n + 1):
        src = pairs[starts[item] : starts[item + 1], 0]
        if is_head[item] and len(src) > cap:
            src = np.sort(rng.choice(src, size=cap, replace=False))
        kept.append(src)
    lengths = np.asarray([len(k) for k in kept], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    preds = np.concatenate(kept).astype(np.int64) if len(pairs) else np.zeros(0, dtype=np.int64)
    return TransitionGraph(indptr, preds, np.asarray(popularity, dtype=np.int64), int(cap))


def niche_walks(
    graph: TransitionGraph,
    in_batch: np.ndarray,
    starts: np.ndarray,
    rng: np.random.Generator,
    walk_len: int = 10,
    walks_per_start: int = 5,
    alpha: float = 0.5,
    max_walks: int | None = None,
) -> tuple[list[list[int]], list[int]]:
    """Backward walks from each start item on the subgraph of the ``in_batch`` items.

    Args:
        in_batch: (N+1,) bool, the items of the batch's subgraph.
        starts: (S,) start items (targets of the batch).
        walk_len: the most steps of a walk (items of its session).
        walks_per_start: walks from each start.
        alpha: probability of a uniformly random predecessor (else the least popular one).
        max_walks: keep a random subset of at most this many walks (None = all).
    Returns:
        ``(sessions, targets)``: each session lists its items in time order (at least 2) and
        its target is the walk's start item.
    """
    sessions, targets = [], []
    for start in starts.tolist():
        for _ in range(walks_per_start):
            path = [start]
            while len(path) <= walk_len:
                preds = graph.predecessors(path[-1])
                preds = preds[in_batch[preds]]
                if len(preds) == 0:
                    break
                if rng.random() >= alpha:
                    path.append(int(preds[np.argmin(graph.popularity[preds])]))
                else:
                    path.append(int(preds[rng.integers(len(preds))]))
            if len(path) > 2:
                sessions.append(path[:0:-1])
                targets.append(path[0])
    if max_walks is not None and len(sessions) > max_walks:
        pick = rng.choice(len(sessions), size=max_walks, replace=False)
        sessions, targets = [sessions[i] for i in pick], [targets[i] for i in pick]
    return sessions, targets


def walk_rows(
    sessions: list[list[int]], targets: list[int], max_len: int, shifted: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Walk sessions as left-padded training rows, shaped like the split's own examples.

    ``shifted``: the target at every position is the next item of ``session + [target]``
    (each step of the walk is a next-item example, as training windows are); otherwise only
    the last position has a target (prefix examples). Sessions longer than ``max_len`` keep
    their last ``max_len`` items.

    Returns:
        (W, max_len) int64 inputs and targets.
    """
    inputs = np.zeros((len(sessions), max_len), dtype=np.int64)
    outs = np.zeros((len(sessions), max_len), dtype=np.int64)
    for r, (session, target) in enumerate(zip(sessions, targets)):
        seq = np.asarray(list(session) + [target], dtype=np.int64)
        x, y = seq[:-1][-max_len:], seq[1:][-max_len:]
        inputs[r, max_len - len(x) :] = x
        if shifted:
            outs[r, max_len - len(y) :] = y
        else:
            outs[r, -1] = target
    return inputs, outs


class NicheWalkBatches:
    """The split's shuffled windows (:class:`WindowBatches`) with niche-walk rows appended to
    every micro-batch (:class:`LOAMBatch`).

    The walks of each optimiser step draw from a NumPy generator seeded from the epoch's
    shuffling generator, so an epoch (and a resumed one) is reproducible.

    Args:
        split: the training split (windows; ``config.train_examples`` says the row shape).
        settings: batch size, accumulation and data-parallel shard.
        graph: the :class:`TransitionGraph` of ``split``'s training windows.
        aug_ratio: walks (and start items) per original row.
        walk_len, walks_per_start, alpha: as for :func:`niche_walks`.
    """

    def __init__(
        self,
        split: Split,
        settings: BatchSettings,
        graph: TransitionGraph,
        aug_ratio: float = 0.1,
        walk_len: int = 10,
        walks_per_start: int = 5,
        alpha: float = 0.5,
    ) -> None:
        self.base = WindowBatches.from_split(split, settings)
        self.graph = graph
        self.aug_ratio, self.walk_len, self.walks_per_start, self.alpha = aug_ratio, walk_len, walks_per_start, alpha
        self.shifted = split.config.train_examples != "prefixes"
        self.max_len = int(split.train_inputs.shape[1])
        self.num_items = len(graph.popularity) - 1

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch (those of the windows alone)."""
        return self.base.steps_per_epoch()

    def augment(self, batch: TrainBatch, rng: np.random.Generator) -> LOAMBatch:
        """``batch`` with up to ``int(rows · aug_ratio)`` niche-walk rows appended."""
        budget = int(batch.inputs.shape[0] * self.aug_ratio)
        targets = batch.targets[batch.targets > 0].numpy()
        if budget < 1 or len(targets) == 0:
            return LOAMBatch(batch.inputs, batch.targets, batch.users, 0)
        in_batch = np.zeros(self.num_items + 1, dtype=bool)
        in_batch[batch.inputs.numpy().ravel()] = True
        in_batch[targets] = True
        in_batch[0] = False
        starts = rng.choice(targets, size=budget, replace=True)
        sessions, walk_targets = niche_walks(
            self.graph, in_batch, starts, rng, self.walk_len, self.walks_per_start, self.alpha, budget
        )
        if not sessions:
            return LOAMBatch(batch.inputs, batch.targets, batch.users, 0)
        x, y = walk_rows(sessions, walk_targets, self.max_len, self.shifted)
        users = torch.full((len(sessions),), -1, dtype=batch.users.dtype)
        return LOAMBatch(
            torch.cat([batch.inputs, torch.from_numpy(x)]),
            torch.cat([batch.targets, torch.from_numpy(y)]),
            torch.cat([batch.users, users]),
            len(sessions),
        )

    def epoch(self, generator: torch.Generator) -> Iterator[list[LOAMBatch]]:
        """For each optimiser step, this process's micro-batches with their walk rows."""
        for micro in self.base.epoch(generator):
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            rng = np.random.default_rng(seed)
            yield [self.augment(b, rng) for b in micro]
