"""The Method interface: what the trainer trains and the evaluator ranks.

A Method composes item representations, backbones, gates and losses. It exposes
``losses(batch)`` (a dict of named scalar losses the trainer sums and logs),
``score_all(histories)`` (scores over the whole catalogue for evaluation) and a list of
phases. Multi-phase methods (PAD) are trained phase by phase by the same trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from padrec.data.stats import ItemStats
from padrec.registry import Registry


@dataclass
class MethodContext:
    """What a method may know about the data when it is built.

    Attributes:
        num_items: N (item ids 1..N, 0 = padding).
        max_len: history window L.
        item_stats: per-item frequency, buckets and groups (N+1 rows).
        text_embeddings: optional frozen (N+1)×D float tensor of item text embeddings,
            row 0 = zeros.
    """

    num_items: int
    max_len: int
    item_stats: ItemStats | None = None
    text_embeddings: torch.Tensor | None = None


@dataclass
class TrainBatch:
    """One batch of training sequences.

    Attributes:
        inputs: (B, L) int64 left-padded input items.
        targets: (B, L) int64 next items, 0 where there is no target.
        users: (B,) int64 user indices.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor

    def to(self, device: torch.device | str) -> "TrainBatch":
        return TrainBatch(self.inputs.to(device), self.targets.to(device), self.users.to(device))


@dataclass
class Phase:
    """One training phase of a method.

    Attributes:
        name: phase name (``train`` for single-phase methods; ``pretrain``, ``align``,
            ``disentangle`` for PAD).
        overrides: training settings this phase changes (e.g. ``{"lr": 1e-4}``), applied
            over the run's :class:`~padrec.training.trainer.TrainConfig`.
        config_keys: the method-config fields this phase depends on (None = all); a
            finished phase is reused when these, the data and the phases it depends on are
            unchanged.
        after: the earlier phases whose weights this phase starts from or uses (None = every
            earlier phase). A phase that does not depend on another is not retrained when
            only that other phase's settings change.
        added_keys: config fields added to the method after runs of this phase existed,
            each with the value that does what the phase did before the field existed. A
            field at that value is left out of the fingerprint, so adding an option does not
            invalidate finished phases that it would not have changed.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    config_keys: list[str] | None = None
    after: list[str] | None = None
    added_keys: dict[str, Any] = field(default_factory=dict)


class Method(nn.Module):
    """Base class of every recommender the trainer can run.

    Subclasses set ``config_class`` (a dataclass) and implement ``losses`` and
    ``score_all``; multi-phase methods override ``phases``, ``begin_phase`` and
    ``trainable_parameters``.
    """

    config_class: type

    def __init__(self, config: Any, context: MethodContext) -> None:
        super().__init__()
        self.config = config
        self.context = context
        self.num_items = context.num_items
        self.phase = self.phases()[0].name

    # --- phases -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        """The ordered phases; single-phase methods have one named ``train``."""
        return [Phase("train")]

    def begin_phase(self, name: str) -> None:
        """Prepare for phase ``name`` (copy weights from an earlier phase, freeze parts)."""
        self.phase = name

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates in the current phase."""
        return [p for p in self.parameters() if p.requires_grad]

    # --- training and scoring ---------------------------------------------------------
    def losses(self, batch: TrainBatch) -> dict[str, torch.Tensor]:  # pragma: no cover
        """Named scalar losses for one batch; the trainer minimises their sum."""
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        """JSON-friendly facts about the trained model worth keeping with its results (e.g. PAD's
        expert weights per frequency bucket); written to ``results.json`` as ``method_report``."""
        return {}

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """Named (N+1)×d item-vector tables for analyses (e.g. ``{"id": ..., "text": ...}``)."""
        return {}

    def score_all(self, histories: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Scores of every item for each history.

        Args:
            histories: (B, L) int64 left-padded histories.
        Returns:
            (B, N+1) float scores; column 0 (padding) is ignored by the evaluator.
        """
        raise NotImplementedError


METHODS: Registry[Method] = Registry("method", Method)
