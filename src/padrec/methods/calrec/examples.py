"""CALRec's training examples: (history, next item) pairs drawn from one or more domains.

Every position of a training window that has a target is one example: its history is the
window's items up to that position. An epoch draws ``examples_per_epoch`` of them (an equal
share from each domain; 0 = every example of every domain), shuffles them and cuts them into
optimiser steps; like :class:`~padrec.methods.batches.WindowBatches`, each process keeps
every W-th example of a step and splits its share into micro-batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from padrec.methods.batches import BatchSettings
from padrec.methods.calrec.prompts import CALRecBatch, PromptCodec, collate


@dataclass
class ExampleSource:
    """One domain's training windows.

    Attributes:
        name: the domain (a key of the codec's item texts).
        inputs, targets: (T, L) int64 left-padded training windows and their next items.
    """

    name: str
    inputs: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        rows, cols = np.nonzero(self.targets)
        self.positions = np.stack([rows, cols], axis=1).astype(np.int64)  # (P, 2)
        if not len(self.positions):
            raise ValueError(f"domain {self.name!r} has no training examples")

    def example(self, p: int) -> tuple[list[int], int]:
        """(history item ids oldest first, target) of example ``p``."""
        row, col = self.positions[p]
        window = self.inputs[row, : col + 1]
        return [int(x) for x in window[window > 0]], int(self.targets[row, col])


class CALRecBatches:
    """The :class:`~padrec.methods.batches.BatchBuilder` of CALRec's stages."""

    def __init__(
        self, sources: list[ExampleSource], codec: PromptCodec, settings: BatchSettings, examples_per_epoch: int
    ) -> None:
        if not sources:
            raise ValueError("CALRecBatches needs at least one domain")
        if settings.batch_size < settings.world_size * settings.accumulation:
            raise ValueError(
                f"batch_size {settings.batch_size} is smaller than processes × accumulation steps "
                f"({settings.world_size} × {settings.accumulation})"
            )
        self.sources, self.codec, self.settings = sources, codec, settings
        self.domain_index = {s.name: i for i, s in enumerate(sources)}
        if examples_per_epoch:
            share = math.ceil(examples_per_epoch / len(sources))
            self.per_source = [min(share, len(s.positions)) for s in sources]
        else:
            self.per_source = [len(s.positions) for s in sources]

    def examples_per_epoch(self) -> int:
        return sum(self.per_source)

    def steps_per_epoch(self) -> int:
        return math.ceil(self.examples_per_epoch() / self.settings.batch_size)

    def draw(self, generator: torch.Generator) -> list[tuple[int, int]]:
        """This epoch's examples as (source index, position index), shuffled."""
        picked = []
        for i, (src, k) in enumerate(zip(self.sources, self.per_source)):
            idx = torch.randperm(len(src.positions), generator=generator)[:k]
            picked += [(i, int(p)) for p in idx]
        order = torch.randperm(len(picked), generator=generator)
        return [picked[int(j)] for j in order]

    def epoch(self, generator: torch.Generator) -> Iterator[list[CALRecBatch]]:
        s = self.settings
        drawn = self.draw(generator)
        for b in range(self.steps_per_epoch()):
            step = drawn[b * s.batch_size : (b + 1) * s.batch_size]
            short = s.world_size * s.accumulation - len(step)
            if short > 0:
                step = step + drawn[:short]
            step = step[s.rank :: s.world_size]
            parts = [step] if s.accumulation == 1 else [list(p) for p in np.array_split(np.array(step), s.accumulation)]
            yield [self._batch(part) for part in parts if len(part)]

    def _batch(self, part: list) -> CALRecBatch:
        examples = []
        for src_i, p in part:
            src = self.sources[int(src_i)]
            history, target = src.example(int(p))
            examples.append((int(p), src.name, history, target))
        return collate(self.codec, examples, self.domain_index)
