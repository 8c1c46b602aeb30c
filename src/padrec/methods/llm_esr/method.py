"""LLM-ESR (Liu et al., NeurIPS 2024): dual-view modelling plus retrieval-augmented self-distillation.

- Items: :class:`~padrec.models.items.llm_esr.DualViewItems`, ``[E_i ; adapter(x_i)]`` with E
  initialised from PCA of the text and x frozen.
- Users: :class:`~padrec.models.llm_esr.DualViewEncoder`: cross-view attention, then the
  shared backbone over each view; ``u = [backbone(ẽ)_L ; backbone(m̃)_L]`` (2d).
- Scores: ``u · [E_i ; adapter(x_i)]`` = collaborative + semantic dot products.
- Loss: ``L = L_rec + α L_SD``; ``L_rec`` = BCE with one uniform negative at every target
  position (or full-softmax CE); ``L_SD`` = MSE between the user's vector (last position of
  the training window) and the detached mean vector of its K similar users
  (:mod:`padrec.methods.llm_esr.retrieval`), computed with the same model.
"""

from __future__ import annotations

import torch

from padrec.data.protocols import Split
from padrec.losses.llm_esr import self_distillation_loss
from padrec.losses.ranking import bce_loss, sample_negatives, softmax_ce_loss
from padrec.methods.base import METHODS, Method, MethodContext, Phase, ScoreFactors
from padrec.methods.batches import BatchSettings, StepInfo, TrainBatch
from padrec.methods.llm_esr.config import LLMESRConfig
from padrec.methods.llm_esr.retrieval import SimilarUserBatches, SimilarUsers
from padrec.models.backbones.base import BACKBONES, build_backbone
from padrec.models.items.llm_esr import DualViewItems
from padrec.models.llm_esr import DualViewEncoder, ViewEmbedding


@METHODS.register("llm_esr")
class LLMESR(Method):
    """Dual-view items and users with self-distillation towards similar users (module docstring)."""

    config_class = LLMESRConfig
    requires_text = True

    @classmethod
    def causal(cls, config: LLMESRConfig) -> bool:
        """As the backbone, unless the cross-view attention sees the whole window (``cross_mask: padding``)."""
        return BACKBONES.get(config.backbone).causal and config.cross_mask == "causal"

    def __init__(self, config: LLMESRConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        items = DualViewItems(context.text_embeddings, config.hidden_size, config.pca_init, config.init_std)
        backbone = build_backbone(config.backbone, config.built_backbone_config(), config.hidden_size, context.max_len)
        embed = None
        if config.embed_before_cross:
            dropout = backbone.config.dropout if config.embed_dropout is None else config.embed_dropout
            embed = ViewEmbedding(config.hidden_size, context.max_len, dropout, config.init_std)
        self.model = DualViewEncoder(
            items,
            backbone,
            config.cross_attention,
            config.cross_heads,
            causal_cross=config.cross_mask == "causal",
            embed=embed,
        )
        self.retrieval: SimilarUsers | None = None

    def phases(self) -> list[Phase]:
        batches = self._batches if self.config.distill and self.config.alpha else None
        return [Phase("train", losses=self._losses, score=self._score, trains=["model"], batches=batches)]

    # --- batches and losses -----------------------------------------------------------
    def similar_users(self, split: Split) -> SimilarUsers:
        """The similar users of ``split``'s training users (retrieved once per split)."""
        if self.retrieval is None or getattr(self, "_retrieval_key", None) != id(split):
            self.retrieval = SimilarUsers.from_split(split, self.context.text_embeddings, self.config.sim_users)
            self._retrieval_key = id(split)
        return self.retrieval

    def _batches(self, split: Split, settings: BatchSettings) -> SimilarUserBatches:
        return SimilarUserBatches(split, settings, self.similar_users(split))

    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        items = self.model.items
        h = self.model.encode(batch.inputs)  # B × L × 2d
        if cfg.loss == "ce":
            out = {"rec": softmax_ce_loss(h, items.all(), batch.targets)}
        else:
            neg = sample_negatives(batch.inputs, batch.targets, self.num_items, cfg.num_negatives)
            pos = (h * items.candidates(batch.targets)).sum(-1)
            neg_logits = torch.einsum("bld,blkd->blk", h, items.candidates(neg))
            out = {"rec": bce_loss(pos, neg_logits, batch.targets > 0)}
        similar = getattr(batch, "similar", None)
        if cfg.distill and cfg.alpha and similar is not None and similar.shape[1] > 0:
            B, K, L = similar.shape
            with torch.no_grad():  # the release detaches the similar users' vectors
                teacher = self.model.user_vector(similar.reshape(B * K, L)).view(B, K, -1)
            known = (similar > 0).flatten(1).any(1)
            out["distill"] = cfg.alpha * self_distillation_loss(h[:, -1], teacher, known)
        return out

    # --- scoring, analyses, serving ---------------------------------------------------
    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.model.user_vector(histories) @ self.model.items.all().t()

    def score_parts(self, histories: torch.Tensor) -> dict[str, torch.Tensor]:
        """``id`` (collaborative) and ``llm`` (semantic) dot products; their sum is the score."""
        d = self.config.hidden_size
        u, table = self.model.user_vector(histories), self.model.items.all()
        return {"id": u[:, :d] @ table[:, :d].t(), "llm": u[:, d:] @ table[:, d:].t()}

    def score_factors(self) -> ScoreFactors:
        """``score_all(h) == user_vector(h) @ items.T`` with blocks ``id`` and ``llm``."""
        d = self.config.hidden_size
        items = self.model.items

        def rows(ids: torch.Tensor) -> torch.Tensor:
            return items.all()[ids]

        return ScoreFactors(items.all(), self.model.user_vector, {"id": slice(0, d), "llm": slice(d, 2 * d)}, rows)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id`` (E) and ``llm`` (adapter(x)) tables, (N+1)×d each."""
        d = self.config.hidden_size
        with torch.no_grad():
            table = self.model.items.all().detach()
        return {"id": table[:, :d].clone(), "llm": table[:, d:].clone()}
