"""What the long-tail ID baselines (CITIES, MELT) share: the users' training sequences of a
split, the papers' head/tail rules, and *phase state*.

Phase state: a method may compute tensors from the training data that its scoring needs
(CITIES: the inferred tail-item table; MELT: the tail-user length threshold). The training
data reaches a method only through a phase's batch builder, and a phase's checkpoint holds
only the parameters the phase trains, so such tensors are kept as ``requires_grad=False``
parameters that :meth:`PhaseStateMethod.trainable_parameters` adds to the phase's list: the
optimiser never changes them (they get no gradient), data-parallel training ignores them,
and they are saved in (and restored from) the phase's ``best.safetensors``, so a reused or
resumed phase scores as the run that trained it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from padrec.data.protocols import Split
from padrec.methods.base import Method
from padrec.methods.objectives import check_common_fields


def state_parameter(*shape: int) -> nn.Parameter:
    """A zero tensor of ``shape`` kept as phase state (``requires_grad=False``)."""
    return nn.Parameter(torch.zeros(shape), requires_grad=False)


class PhaseStateMethod(Method):
    """A :class:`Method` whose phases may own state parameters (module docstring)."""

    def phase_state(self, phase: str) -> list[nn.Parameter]:
        """The state parameters phase ``phase`` computes (default: none)."""
        return []

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the current phase trains, then its state parameters (which never
        receive a gradient, so the optimiser leaves them as the phase computes them)."""
        out = super().trainable_parameters()
        seen = {id(p) for p in out}
        return out + [p for p in self.phase_state(self.phase) if id(p) not in seen]


def _window_sequence(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The items a training window covers: its inputs (padding dropped) and its last target."""
    items = inputs[inputs > 0]
    return np.concatenate([items, targets[-1:]]) if targets[-1] > 0 else items


def training_sequences(split: Split) -> dict[int, np.ndarray]:
    """Each training user's training part (``seq[:-2]`` under leave-one-out), in order.

    Users with a validation example get their whole training part (the validation set's
    seen items, checked against the training window); users trained on but not evaluated
    (``short_sequences: train_only``) get what their last training window covers (the last
    prefix when the split has prefix examples); every such user has fewer than 3 items, so
    that is their whole sequence.

    Returns:
        user index -> (n,) int64 items.
    """
    out: dict[int, np.ndarray] = {}
    for row, user in enumerate(split.train_users.tolist()):  # a user's rows are in time order
        out[user] = _window_sequence(split.train_inputs[row], split.train_targets[row])
    valid = split.valid
    for i, user in enumerate(valid.users.tolist()):
        seen = valid.seen(i)
        window = out.get(user)
        if window is not None and len(seen) >= len(window) and np.array_equal(seen[len(seen) - len(window) :], window):
            out[user] = np.asarray(seen, dtype=np.int64)
    return out


def item_frequency(sequences: dict[int, np.ndarray], num_items: int) -> np.ndarray:
    """Interactions of each item in ``sequences`` -> (N+1,) int64 (row 0 = padding, 0)."""
    freq = np.zeros(num_items + 1, dtype=np.int64)
    for seq in sequences.values():
        np.add.at(freq, seq, 1)
    freq[0] = 0
    return freq


def head_by_fraction(frequency: np.ndarray, fraction: float) -> np.ndarray:
    """Head items by the Pareto rule: the ``floor(fraction × M)`` most frequent of the M items
    that occur (ties by ascending id), as ``ItemStats.is_head`` -> (N+1,) bool."""
    order = np.argsort(-frequency[1:], kind="stable")
    n_head = int(fraction * int((frequency[1:] > 0).sum()))
    head = np.zeros(len(frequency), dtype=bool)
    head[order[:n_head] + 1] = True
    return head


def csr_by_owner(owners: np.ndarray, num_owners: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by owner: (order (M,) rows sorted by owner, stable; indptr (num_owners+1,)),
    so owner o's rows are ``order[indptr[o]:indptr[o+1]]``."""
    order = np.argsort(owners, kind="stable")
    counts = np.bincount(owners, minlength=num_owners)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return order.astype(np.int64), indptr


def shard(idx: torch.Tensor, rank: int, world_size: int, accumulation: int) -> list[torch.Tensor]:
    """This process's share of a global batch's rows (every ``world_size``-th from ``rank``),
    cut into ``accumulation`` micro-batches (some may be empty when there are few rows)."""
    if world_size > 1:
        idx = idx[rank::world_size]
    return [idx] if accumulation == 1 else list(torch.tensor_split(idx, accumulation))


def check_backbone_fields(cfg: Any) -> None:
    """The shared checks of ``hidden_size``, ``num_negatives``, ``init_std`` and the backbone's
    own fields (:func:`padrec.methods.objectives.check_common_fields` without logit adjustment)."""
    check_common_fields(SimpleNamespace(**vars(cfg), logit_adjustment=0.0))
