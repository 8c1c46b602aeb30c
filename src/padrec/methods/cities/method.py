"""CITIES: Contextual Inference of Tail-Item Embeddings for sequential recommendation
(Jang et al., ICDM 2020; official code github.com/swonj90/CITIES), two phases:

1. ``pretrain`` — the backbone with its ID table E, trained on next-item prediction as the
   plain sequential method trains it.
2. ``infer`` — E and the backbone frozen; the embedding-inference function F_φ
   (:class:`~padrec.models.items.cities.EmbeddingInference`) learns to infer a head item's
   embedding from a few of its contexts:
   ``φ* = argmin_φ Σ_{i ∈ head} mean_j (F_φ(C_i^K)_j − E_ij)²`` with K ~ U{1..max_shots} contexts
   per item and batch. Scoring replaces the row of every tail item that has a context by
   ``F_φ`` of all its contexts, in the history and candidate table alike (the official code
   writes the inferred rows into the model's item-embedding layer); head items and tail
   items without a context keep their trained rows.

The inferred rows are phase state of ``infer`` (recomputed from the training contexts when
the method is put in eval mode after training steps, saved with the phase's weights), so a
finished run scores, reloads and serves with them. Items are head or tail by their training
frequency: the top ``head_fraction`` (paper: 20%) are head.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from padrec.data.protocols import Split
from padrec.losses.cities import embedding_inference_loss
from padrec.methods._longtail_common import PhaseStateMethod
from padrec.methods.base import METHODS, MethodContext, Phase
from padrec.methods.batches import BatchSettings, StepInfo, TrainBatch
from padrec.methods.cities.config import CITIESConfig
from padrec.methods.cities.data import ContextBatch, HeadContextBatches, ItemContexts, build_item_contexts
from padrec.methods.objectives import ranking_losses
from padrec.models.backbones.base import build_backbone
from padrec.models.experts import Expert
from padrec.models.items.cities import EmbeddingInference, TailInferredItems

# items inferred per forward pass when the tail table is recomputed
INFER_CHUNK = 512


@METHODS.register("cities")
class CITIES(PhaseStateMethod):
    """A pre-trained backbone whose tail-item embeddings are inferred from their contexts."""

    config_class = CITIESConfig

    def __init__(self, config: CITIESConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        d = config.hidden_size
        items = TailInferredItems(context.num_items, d, config.init_std)
        backbone = build_backbone(config.backbone, config.backbone_config, d, context.max_len)
        self.expert = Expert(items, backbone)
        self.inference: EmbeddingInference | None = EmbeddingInference(
            d,
            context_size=config.context_size,
            num_heads=config.num_heads,
            num_layers=config.num_layers,
            attention_dropout=config.attention_dropout,
            ffn_dropout=config.ffn_dropout,
            residual_dropout=config.residual_dropout,
            position_dropout=config.position_dropout,
            init_std=config.init_std,
        )
        self.contexts: ItemContexts | None = None  # set when phase 'infer' builds its batches
        self._stale = True  # F_φ changed since the tail rows were last inferred

    @property
    def items(self) -> TailInferredItems:
        """The expert's item table (E with inferred tail rows)."""
        return self.expert.items

    # --- phases -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        cfg = self.config
        return [
            Phase("pretrain", losses=self._pretrain_losses, score=self.expert.score_all, trains=["expert"]),
            Phase(
                "infer",
                losses=self._infer_losses,
                score=self._infer_score,
                trains=["inference"],
                frozen=["expert"],
                overrides={"lr": cfg.lr, "warmup_steps": cfg.warmup_steps},
                after=["pretrain"],
                batches=self._context_batches,
            ),
        ]

    def phase_state(self, phase: str) -> list[nn.Parameter]:
        if phase == "infer" and isinstance(self.expert.items, TailInferredItems):
            return [self.items.inferred, self.items.replaced]
        return []

    def train(self, mode: bool = True) -> CITIES:
        """As :meth:`Method.train`; eval mode marks the tail rows for re-inference (F_φ may
        have changed), done at the next score."""
        super().train(mode)
        if not mode:
            self._stale = True
        return self

    def _context_batches(self, split: Split, settings: BatchSettings) -> HeadContextBatches:
        """Phase ``infer``'s batches; keeps every item's contexts for inferring the tail rows."""
        cfg = self.config
        self.contexts = build_item_contexts(
            split, self.num_items, cfg.context_size, cfg.head_fraction, cfg.tail_max_frequency
        )
        self._stale = True
        return HeadContextBatches(self.contexts, settings, cfg.max_shots)

    # --- losses -----------------------------------------------------------------------
    def _pretrain_losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(self.expert, batch, cfg.loss, self.num_items, cfg.num_negatives)

    def _infer_losses(self, batch: ContextBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        self._stale = True
        table = self.items.ids.all().detach()
        inferred = self.inference(table, batch.contexts)
        return {"infer": embedding_inference_loss(inferred, table[batch.items])}

    # --- tail inference and scoring ---------------------------------------------------
    def infer_tail(self) -> tuple[torch.Tensor, torch.Tensor]:
        """F_φ of all the contexts of every tail item that has one (items grouped by their
        number of contexts, as the official code buckets them) -> ((M,) items, (M, d))."""
        if self.contexts is None:
            raise ValueError("CITIES: no item contexts (they are built when phase 'infer' trains)")
        data = self.contexts
        device = self.items.inferred.device
        table = self.items.ids.all().detach()
        tail = data.items(head=False)
        counts = data.counts[tail]
        out_items, out_vecs = [], []
        for k in torch.unique(counts).tolist():
            group = tail[counts == k]
            for chunk in torch.split(group, max(1, INFER_CHUNK // k)):
                rows = data.indptr[chunk].unsqueeze(1) + torch.arange(k)
                ctx = data.contexts[rows].to(device)  # n × k × (2c+1)
                out_items.append(chunk)
                out_vecs.append(self.inference(table, ctx))
        if not out_items:
            return torch.zeros(0, dtype=torch.long, device=device), table.new_zeros(0, table.shape[1])
        return torch.cat(out_items).to(device), torch.cat(out_vecs)

    def refresh_tail(self) -> None:
        """Infer the tail rows with the current F_φ (eval mode, no gradient) when they may be
        stale and the contexts are known; otherwise keep the stored rows."""
        if not self._stale or self.contexts is None or self.inference is None:
            return
        if not isinstance(self.expert.items, TailInferredItems):
            return
        was = self.inference.training
        self.inference.eval()
        with torch.inference_mode(False), torch.no_grad():
            items, vectors = self.infer_tail()
            self.items.set_inferred(items, vectors)
        self.inference.train(was)
        self._stale = False

    def _infer_score(self, histories: torch.Tensor) -> torch.Tensor:
        self.refresh_tail()
        return self.expert.score_all(histories)

    # --- reporting and serving --------------------------------------------------------
    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id`` (E as pre-trained) and ``cities`` (E with the inferred tail rows), (N+1)×d."""
        if not isinstance(self.expert.items, TailInferredItems):
            return {"cities": self.expert.items.all().detach()}
        self.refresh_tail()
        return {"id": self.items.ids.all().detach(), "cities": self.items.all().detach()}

    def report(self) -> dict[str, Any]:
        """How many items are head, tail, and tail with inferred rows."""
        if not isinstance(self.expert.items, TailInferredItems):
            return {}
        out: dict[str, Any] = {"replaced_items": int(self.items.replaced.sum())}
        if self.contexts is not None:
            head = self.contexts.head[1:]
            out.update(head_items=int(head.sum()), tail_items=int((~head).sum()))
        return out

    def for_serving(self, copy_model: bool = True) -> CITIES:
        """The model with E' (inferred tail rows) frozen into one table; F_φ and the contexts,
        which only computed those rows, are dropped."""
        self.refresh_tail()
        contexts, self.contexts = self.contexts, None
        try:
            served = copy.deepcopy(self) if copy_model else self
        finally:
            self.contexts = contexts
        served.contexts = None
        served = super(CITIES, served).for_serving(copy_model=False)
        served.inference = None
        return served
