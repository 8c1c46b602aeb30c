"""The plain sequential recommender: one item representation feeding one backbone.

With the ``id`` representation this is SASRec, GRU4Rec, Caser, ...; with ``text`` it is
MoRec (items from their text only); with ``hybrid`` it is ID ⊕ text into the backbone. Any
registered item representation or backbone is a config value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from padrec.config import setting
from padrec.methods.base import METHODS, Method, MethodContext, Phase
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.methods.objectives import MAX_SHARED_NEGATIVES, check_common_fields, popularity_prior, ranking_losses
from padrec.models.backbones.base import build_backbone
from padrec.models.experts import Expert
from padrec.models.items.base import ITEM_REPRESENTATIONS, ItemContext, build_items, items_config


@dataclass
class SequentialConfig:
    """A sequential recommender.

    Attributes:
        backbone: registered backbone name (``sasrec``, ``gru4rec``, ``caser``, ...).
        backbone_config: the backbone's own fields (``num_layers``, ``num_heads``, ``dropout``,
            ...); ``hidden_size`` and ``max_len`` are filled in from this config and the split
            (giving them a different value here is an error).
        items: registered item representation: ``id`` (default), ``text`` (MoRec), ``hybrid``
            (ID ⊕ text), or any other registered one.
        items_config: the item representation's own fields.
        hidden_size: d, the width of item and sequence vectors.
        loss: ``ce`` (full softmax cross-entropy; converges fastest on small catalogues),
            ``bce`` (one or more sampled negatives per position; PAD's loss) or
            ``sampled_ce`` (softmax over the target and ``sampled_negatives`` negatives
            shared by the batch: the cost per position no longer grows with the catalogue,
            for catalogues of 10^5-10^6 items).
        num_negatives: negatives per position for ``bce``.
        sampled_negatives: K, negatives shared by a batch for ``sampled_ce``.
        negative_sampler: how ``sampled_ce`` draws them: ``uniform`` over 1..N or
            ``popularity`` (∝ training frequency + 1, with the log Q correction).
        init_std: std of the normal initialisation of ID tables.
        logit_adjustment: τ ≥ 0; training adds τ·log π_i (smoothed training popularity) to
            every logit (of the full softmax, or of the positive and negatives under ``bce``),
            so the scores estimate p(i | history) / π_i^τ and rarely trained items are not
            pushed down for their rarity (0 = plain loss). Scoring uses the raw logits.
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    items: str = "id"
    items_config: dict[str, Any] = field(default_factory=dict)
    hidden_size: int = 64
    loss: Literal["ce", "bce", "sampled_ce"] = "ce"
    num_negatives: int = 1
    init_std: float = 0.02
    logit_adjustment: float = 0.0
    # added after runs existed: at their legacy values they leave fingerprints unchanged
    sampled_negatives: int = setting(1024, legacy=1024)
    negative_sampler: Literal["uniform", "popularity"] = setting("uniform", legacy="uniform")

    def __post_init__(self) -> None:
        check_common_fields(self)
        if self.loss not in ("ce", "bce", "sampled_ce"):
            raise ValueError(f"loss must be ce, bce or sampled_ce, got {self.loss!r}")
        if not 1 <= self.sampled_negatives <= MAX_SHARED_NEGATIVES:
            raise ValueError(
                f"sampled_negatives must be between 1 and {MAX_SHARED_NEGATIVES}, got {self.sampled_negatives}"
            )
        if self.negative_sampler not in ("uniform", "popularity"):
            raise ValueError(f"negative_sampler must be uniform or popularity, got {self.negative_sampler!r}")
        items_config(self.items, self.items_config)


@METHODS.register("sequential")
class SequentialRecommender(Method):
    """An item representation feeding one backbone; scores are dot products with the
    representation's candidate vectors."""

    config_class = SequentialConfig

    @classmethod
    def needs_text(cls, config: SequentialConfig) -> bool:
        return ITEM_REPRESENTATIONS.get(config.items).needs_text

    def __init__(self, config: SequentialConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        item_ctx = ItemContext(context.num_items, config.hidden_size, context.text_embeddings, config.init_std)
        items = build_items(config.items, config.items_config, item_ctx)
        backbone = build_backbone(config.backbone, config.backbone_config, config.hidden_size, context.max_len)
        self.expert = Expert(items, backbone)
        self.register_buffer("log_prior", popularity_prior(context, config.logit_adjustment), persistent=False)
        popularity_sampler = config.loss == "sampled_ce" and config.negative_sampler == "popularity"
        self.register_buffer(
            "sampler_log_q", popularity_prior(context, 1.0) if popularity_sampler else None, persistent=False
        )

    def phases(self) -> list[Phase]:
        return [Phase("train", losses=self._losses, score=self._score, trains=["expert"])]

    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(
            self.expert,
            batch,
            cfg.loss,
            self.num_items,
            cfg.num_negatives,
            self.log_prior,
            cfg.logit_adjustment,
            cfg.sampled_negatives,
            self.sampler_log_q,
        )

    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.expert.score_all(histories)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        return {self.config.items: self.expert.items.all().detach()}
