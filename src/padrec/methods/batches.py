"""Training batches and the builders that make them, one optimiser step at a time.

A :class:`BatchBuilder` turns the training data into, for each optimiser step, the list of
micro-batches this process computes (one unless gradients are accumulated). The default,
:class:`WindowBatches`, shuffles the split's id windows; a method whose phase trains on
something else (token batches of a language model, pairs, graphs) gives the phase its own
builder factory. Builders shard each global batch over data-parallel processes themselves,
so every process sees a disjoint part of the same global batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from padrec.data.protocols import Split


@dataclass
class TrainBatch:
    """One batch of training sequences.

    Attributes:
        inputs: (B, L) int64 left-padded input items.
        targets: (B, L) int64 next items, 0 where there is no target (with prefix examples
            only the last position has one).
        users: (B,) int64 user indices.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(self.inputs.to(device), self.targets.to(device), self.users.to(device))


@dataclass
class StepInfo:
    """Where training stands when a loss is computed (for curricula and schedules).

    Attributes:
        epoch: 0-based epoch of the phase.
        step: 0-based optimiser step within the epoch.
        steps_per_epoch: optimiser steps in one epoch.
        epochs: the phase's maximum number of epochs.
    """

    epoch: int
    step: int
    steps_per_epoch: int
    epochs: int

    @property
    def global_step(self) -> int:
        """Optimiser steps taken in this phase before this one."""
        return self.epoch * self.steps_per_epoch + self.step

    @property
    def progress(self) -> float:
        """Fraction of the phase's maximum training done, in [0, 1)."""
        return self.global_step / max(1, self.epochs * self.steps_per_epoch)


@dataclass
class BatchSettings:
    """How a builder cuts batches.

    Attributes:
        batch_size: examples per optimiser step, over all processes together.
        accumulation: micro-batches each process splits its share into (gradient accumulation).
        rank, world_size: this process's index and the number of data-parallel processes.
    """

    batch_size: int
    accumulation: int = 1
    rank: int = 0
    world_size: int = 1


class BatchBuilder(Protocol):
    """What the trainer needs from a source of batches. Batches must have ``.to(device)``."""

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch."""
        ...

    def epoch(self, generator: torch.Generator) -> Iterator[list[Any]]:
        """For each optimiser step, this process's micro-batches (drawing order from ``generator``)."""
        ...


class WindowBatches:
    """Shuffled id windows of a :class:`Split` (every method's default).

    Each epoch draws one permutation of the T training rows from the generator; step b takes
    rows ``perm[b·B : (b+1)·B]``, process r of W keeps every W-th of them (starting at r),
    and splits its share into ``accumulation`` micro-batches. A last batch with fewer rows
    than W × accumulation is topped up from the start of the permutation.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, users: torch.Tensor, settings: BatchSettings):
        if settings.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {settings.batch_size}")
        if settings.batch_size < settings.world_size * settings.accumulation:
            raise ValueError(
                f"batch_size {settings.batch_size} is smaller than processes × accumulation steps "
                f"({settings.world_size} × {settings.accumulation})"
            )
        self.inputs, self.targets, self.users = inputs, targets, users
        self.settings = settings

    @classmethod
    def from_split(cls, split: Split, settings: BatchSettings) -> WindowBatches:
        """The split's training windows (``train_inputs``, ``train_targets``, ``train_users``)."""
        return cls(
            torch.from_numpy(split.train_inputs),
            torch.from_numpy(split.train_targets),
            torch.from_numpy(split.train_users),
            settings,
        )

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.inputs) / self.settings.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[list[TrainBatch]]:
        s = self.settings
        perm = torch.randperm(len(self.inputs), generator=generator)
        for b in range(self.steps_per_epoch()):
            idx = perm[b * s.batch_size : (b + 1) * s.batch_size]
            short = s.world_size * s.accumulation - len(idx)
            if short > 0:  # a last batch too small to give every process and micro-batch a row
                idx = torch.cat([idx, perm[:short]])
            if s.world_size > 1:
                idx = idx[s.rank :: s.world_size]
            parts = [idx] if s.accumulation == 1 else [p for p in torch.tensor_split(idx, s.accumulation) if len(p)]
            yield [TrainBatch(self.inputs[p], self.targets[p], self.users[p]) for p in parts]
