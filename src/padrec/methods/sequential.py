"""ID-only sequential recommenders (SASRec, GRU4Rec, Caser, ...): one ID table + one backbone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from padrec.losses.ranking import bce_loss, sample_negatives, softmax_ce_loss
from padrec.methods.base import METHODS, Method, MethodContext, TrainBatch
from padrec.models.backbones import BACKBONES
from padrec.models.experts import Expert
from padrec.models.items import IDEmbedding


@dataclass
class SequentialConfig:
    """An ID-only sequential recommender.

    Attributes:
        backbone: registered backbone name (``sasrec``, ``gru4rec``, ``caser``).
        backbone_config: the backbone's own fields (``num_layers``, ``num_heads``, ``dropout``,
            ...); ``hidden_size`` and ``max_len`` are filled in from this config and the split.
        hidden_size: d, the width of item and sequence vectors.
        loss: ``ce`` (full softmax cross-entropy; converges fastest on small catalogues) or
            ``bce`` (one or more sampled negatives per position; PAD's loss).
        num_negatives: negatives per position for ``bce``.
        init_std: std of the normal initialisation of the ID table.
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    hidden_size: int = 64
    loss: Literal["ce", "bce"] = "ce"
    num_negatives: int = 1
    init_std: float = 0.02


def build_backbone(name: str, overrides: dict[str, Any], hidden_size: int, max_len: int):
    """Build a registered backbone, filling ``hidden_size`` and ``max_len`` unless given."""
    cfg = {"hidden_size": hidden_size, "max_len": max_len, **overrides}
    return BACKBONES.build(name, cfg)


def ranking_losses(
    expert: Expert, batch: TrainBatch, loss: str, num_items: int, num_negatives: int = 1
) -> dict[str, torch.Tensor]:
    """The next-item loss of one expert on a batch (``ce`` or ``bce``) as ``{"rec": loss}``."""
    h = expert.encode(batch.inputs)  # B × L × d
    if loss == "ce":
        return {"rec": softmax_ce_loss(h, expert.items.all(), batch.targets)}
    neg = sample_negatives(batch.inputs, batch.targets, num_items, num_negatives)
    pos = expert.logits(h, batch.targets.unsqueeze(-1)).squeeze(-1)
    return {"rec": bce_loss(pos, expert.logits(h, neg), batch.targets > 0)}


@METHODS.register("sequential")
class SequentialRecommender(Method):
    """An ID table feeding one backbone; scores are dot products with the ID table."""

    config_class = SequentialConfig

    def __init__(self, config: SequentialConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        items = IDEmbedding(context.num_items, config.hidden_size, init_std=config.init_std)
        backbone = build_backbone(config.backbone, config.backbone_config, config.hidden_size, context.max_len)
        self.expert = Expert(items, backbone)

    def losses(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        return ranking_losses(self.expert, batch, self.config.loss, self.num_items, self.config.num_negatives)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        return {"id": self.expert.items.all().detach()}

    def score_all(self, histories: torch.Tensor) -> torch.Tensor:
        return self.expert.all_logits(self.expert.sequence_vector(histories))
