"""LLM-ESR's similar users, from the training split and item text only, and the batches that
carry their histories.

The release embeds, per user, a prompt listing the titles of the user's training items with
an LLM (``get_user_embedding.ipynb``) and ranks users by cosine similarity of those vectors
(``retrieval_users.ipynb``: the top 100 other users, of which training reads the first
``sim_user_num``). padrec has item text embeddings but no per-user LLM call, so a user's LLM
vector is the mean of the text embeddings of the items in the user's training window (the
items the release's prompt lists, as a bag of title embeddings from the same encoder). Only
training windows are read: no validation or test item enters a user vector.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from padrec.data.protocols import Split
from padrec.methods.batches import BatchSettings, TrainBatch, WindowBatches


@dataclass
class SimilarUserBatch(TrainBatch):
    """A :class:`TrainBatch` with each row's similar users' training windows.

    Attributes:
        similar: (B, K, L) int64 left-padded histories of the K users most similar to each row's user.
    """

    similar: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> SimilarUserBatch:
        """The batch on ``device``."""
        similar = self.similar.to(device) if self.similar is not None else None
        return SimilarUserBatch(self.inputs.to(device), self.targets.to(device), self.users.to(device), similar)


def user_windows(split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each training user's whole training window: its row with the most history items.

    Returns:
        ``(users, windows, last_targets)``: (U,) user indices (ascending), (U, L) their input
        windows and (U,) the target at the window's last position (the user's last training
        item), for shifted windows and prefix examples alike.
    """
    inputs, targets, users = split.train_inputs, split.train_targets, split.train_users
    length = (inputs > 0).sum(1)
    order = np.lexsort((-length, users))  # by user, longest row first
    first = np.ones(len(order), dtype=bool)
    first[1:] = users[order][1:] != users[order][:-1]
    rows = order[first]
    return users[rows].astype(np.int64), inputs[rows].astype(np.int64), targets[rows, -1].astype(np.int64)


def user_text_embeddings(windows: np.ndarray, last_targets: np.ndarray, text: torch.Tensor) -> torch.Tensor:
    """Each user's LLM vector: the mean text embedding of their training items.

    Args:
        windows: (U, L) input windows. last_targets: (U,) the last training item (0 = none).
        text: (N+1, D) item text embeddings (row 0 = padding).
    Returns:
        (U, D) float32.
    """
    items = torch.from_numpy(np.concatenate([windows, last_targets[:, None]], axis=1))
    keep = (items > 0).unsqueeze(-1).float()
    summed = (text.float()[items] * keep).sum(1)
    return summed / keep.sum(1).clamp_min(1.0)


def similar_users(vectors: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """The ``k`` most cosine-similar other users of each user (most similar first).

    Args:
        vectors: (U, D) user vectors.
        k: how many (at most U − 1).
        chunk: rows scored at a time (the U×U matrix is never held whole).
    Returns:
        (U, k) int64 row indices into ``vectors``.
    """
    n = vectors.shape[0]
    k = min(k, n - 1)
    unit = F.normalize(vectors.float(), dim=-1)
    out = torch.zeros(n, max(k, 0), dtype=torch.long)
    if k < 1:
        return out
    for start in range(0, n, chunk):
        scores = unit[start : start + chunk] @ unit.t()
        rows = torch.arange(scores.shape[0])
        scores[rows, rows + start] = float("-inf")
        out[start : start + chunk] = scores.topk(k, dim=1).indices
    return out


@dataclass
class SimilarUsers:
    """The retrieval of a split: for each training user, its K similar users' windows.

    Attributes:
        position: (max user index + 1,) int64 row of each user in ``windows`` (-1 = not a training user).
        windows: (U, L) every training user's window.
        neighbours: (U, K) rows of each user's similar users in ``windows``.
    """

    position: np.ndarray
    windows: torch.Tensor
    neighbours: torch.Tensor

    @classmethod
    def from_split(cls, split: Split, text: torch.Tensor, k: int) -> SimilarUsers:
        """Retrieve the ``k`` similar users of every training user of ``split``."""
        users, windows, last = user_windows(split)
        neighbours = similar_users(user_text_embeddings(windows, last, text), k)
        position = np.full(int(users.max()) + 1 if len(users) else 0, -1, dtype=np.int64)
        position[users] = np.arange(len(users))
        return cls(position, torch.from_numpy(windows), neighbours)

    def histories(self, users: torch.Tensor) -> torch.Tensor:
        """(B,) user indices -> (B, K, L) their similar users' windows (zeros for unknown users)."""
        idx = np.full(users.shape[0], -1, dtype=np.int64)
        u = users.numpy()
        known = (u >= 0) & (u < len(self.position))
        idx[known] = self.position[u[known]]
        rows = torch.from_numpy(idx)
        out = self.windows[self.neighbours[rows.clamp_min(0)]]
        return out.masked_fill((rows < 0).view(-1, 1, 1), 0)


class SimilarUserBatches:
    """The split's shuffled windows (:class:`WindowBatches`), each micro-batch carrying its
    users' similar users' windows (:class:`SimilarUserBatch`)."""

    def __init__(self, split: Split, settings: BatchSettings, retrieval: SimilarUsers) -> None:
        self.base = WindowBatches.from_split(split, settings)
        self.retrieval = retrieval

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch."""
        return self.base.steps_per_epoch()

    def epoch(self, generator: torch.Generator) -> Iterator[list[SimilarUserBatch]]:
        """For each optimiser step, this process's micro-batches with their similar users."""
        for micro in self.base.epoch(generator):
            yield [SimilarUserBatch(b.inputs, b.targets, b.users, self.retrieval.histories(b.users)) for b in micro]
