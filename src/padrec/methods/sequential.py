"""ID-only sequential recommenders (SASRec, GRU4Rec, Caser, ...): one ID table + one backbone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from padrec.losses.ranking import bce_loss, log_popularity_prior, sample_negatives, softmax_ce_loss
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
        logit_adjustment: τ ≥ 0; training adds τ·log π_i (smoothed training popularity) to
            every logit (of the full softmax, or of the positive and negatives under ``bce``),
            so the scores estimate p(i | history) / π_i^τ and rarely trained items are not
            pushed down for their rarity (0 = plain loss). Scoring uses the raw logits.
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    hidden_size: int = 64
    loss: Literal["ce", "bce"] = "ce"
    num_negatives: int = 1
    init_std: float = 0.02
    logit_adjustment: float = 0.0

    def __post_init__(self) -> None:
        check_logit_adjustment(self.logit_adjustment)


def check_logit_adjustment(tau: float) -> None:
    """Logit adjustment needs τ ≥ 0."""
    if tau < 0:
        raise ValueError(f"logit_adjustment must be >= 0, got {tau}")


def popularity_prior(context: MethodContext, tau: float) -> torch.Tensor | None:
    """The (N+1,) log popularity prior a method with logit adjustment τ needs (None when τ = 0)."""
    if not tau:
        return None
    if context.item_stats is None:
        raise ValueError("logit_adjustment needs item statistics (training frequencies)")
    return log_popularity_prior(context.item_stats.train_frequency)


def build_backbone(name: str, overrides: dict[str, Any], hidden_size: int, max_len: int):
    """Build a registered backbone, filling ``hidden_size`` and ``max_len`` unless given."""
    cfg = {"hidden_size": hidden_size, "max_len": max_len, **overrides}
    return BACKBONES.build(name, cfg)


def ranking_losses(
    expert: Expert,
    batch: TrainBatch,
    loss: str,
    num_items: int,
    num_negatives: int = 1,
    log_prior: torch.Tensor | None = None,
    tau: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The next-item loss of one expert on a batch (``ce`` or ``bce``) as ``{"rec": loss}``;
    ``log_prior`` ((N+1,) log π) and ``tau`` add logit adjustment."""
    h = expert.encode(batch.inputs)  # B × L × d
    if loss == "ce":
        return {"rec": softmax_ce_loss(h, expert.items.all(), batch.targets, log_prior, tau)}
    neg = sample_negatives(batch.inputs, batch.targets, num_items, num_negatives)
    pos = expert.logits(h, batch.targets.unsqueeze(-1)).squeeze(-1)
    neg_logits = expert.logits(h, neg)
    if tau:  # the same offset on the binary logits (Menon et al.'s adjusted loss for any margin loss)
        pos = pos + tau * log_prior[batch.targets]
        neg_logits = neg_logits + tau * log_prior[neg]
    return {"rec": bce_loss(pos, neg_logits, batch.targets > 0)}


@METHODS.register("sequential")
class SequentialRecommender(Method):
    """An ID table feeding one backbone; scores are dot products with the ID table."""

    config_class = SequentialConfig

    def __init__(self, config: SequentialConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        items = IDEmbedding(context.num_items, config.hidden_size, init_std=config.init_std)
        backbone = build_backbone(config.backbone, config.backbone_config, config.hidden_size, context.max_len)
        self.expert = Expert(items, backbone)
        self.register_buffer("log_prior", popularity_prior(context, config.logit_adjustment), persistent=False)

    def losses(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(
            self.expert, batch, cfg.loss, self.num_items, cfg.num_negatives, self.log_prior, cfg.logit_adjustment
        )

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        return {"id": self.expert.items.all().detach()}

    def score_all(self, histories: torch.Tensor) -> torch.Tensor:
        return self.expert.all_logits(self.expert.sequence_vector(histories))
