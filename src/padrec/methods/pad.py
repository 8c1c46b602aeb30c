"""PAD: Pre-train, Align, and Disentangle (SIGIR 2025).

Three phases run by the ordinary trainer:

1. ``pretrain`` — an ID expert (ID table + backbone) trained on next-item prediction.
2. ``align`` — the alignment expert: its own ID table and backbone (copied from phase 1), a
   text MLP over the frozen text embeddings, and item vectors
   GELU(Linear_2d→d(Dropout([id ; MLP(text)]))). Loss = rec + γ · alignment(MLP(text), id)
   over the batch's item slots (recommendation-anchored alignment).
3. ``disentangle`` — ID, alignment and LLM experts (the LLM expert: frozen text -> its own
   MLP -> its own backbone, trained from scratch) fused per candidate item by a
   frequency-aware gate: logit = Σ_e g_e(bucket(item)) · logit_e.

See docs/PAD.md for every switch and where the release differs from the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from padrec.losses.alignment import alignment_loss
from padrec.losses.ranking import bce_loss, sample_negatives
from padrec.methods.base import METHODS, Method, MethodContext, Phase, TrainBatch
from padrec.methods.sequential import build_backbone, ranking_losses
from padrec.models.experts import Expert
from padrec.models.gating import build_gate
from padrec.models.items import ConcatFusion, IDEmbedding, TextMLP

EXPERTS = ("id", "align", "llm")
# Phase 3 fine-tunes experts that are already trained (only the LLM expert and the gate start
# from scratch); at the run's lr (3e-3 by default) it peaks after one epoch and then
# overfits on Prime Pantry, at 5e-4 it keeps improving (BENCHMARKS.md). Override with
# ``phase_train: {disentangle: {lr: ...}}``.
DISENTANGLE_LR = 5e-4
# Keys of PADConfig each phase depends on (a finished phase is reused when these are unchanged).
PRETRAIN_KEYS = ["backbone", "backbone_config", "hidden_size", "loss", "num_negatives", "init_std"]
ALIGN_KEYS = PRETRAIN_KEYS + ["text_mlp_layers", "text_dropout", "fusion_dropout", "alignment", "gamma",
                              "anchoring", "include_padding", "mmd_slots", "mmd_max_slots", "alignment_kwargs"]


@dataclass
class PADConfig:
    """PAD's switches (defaults: padrec's strong setting; ``configs/pad_release.yaml`` = release).

    Attributes:
        backbone, backbone_config, hidden_size, init_std: as for ``sequential``; every expert
            uses its own copy of this backbone.
        loss: ranking loss of every phase: ``ce`` (full softmax) or ``bce`` (sampled
            negatives, the paper's).
        num_negatives: negatives per position for ``bce``.
        text_mlp_layers: hidden [Dropout, Linear d→d, GELU] blocks after Linear D→d + GELU
            (release: 4).
        text_dropout: dropout inside the text MLP (release 0.1).
        fusion_dropout: dropout before the alignment expert's concat fusion.
        alignment: ``mmd_gaussian`` (default, MK-MMD), ``mmd_laplacian``, ``mmd_linear``,
            ``mmd_cosine``, ``infonce`` or ``none`` (no alignment loss, SMEM-like).
        gamma: weight of the alignment loss (paper 0.2).
        anchoring: ``anchored`` (rec + γ·align; default), ``non_anchored`` (align loss
            only in phase 2), ``anchored_frozen_id`` (rec + γ·align with stop-gradient on
            the ID side of the alignment term).
        include_padding: count padding slots in the alignment loss (the release's quirk).
        mmd_slots: which item slots enter the alignment loss: ``all`` (every history,
            target and negative slot, duplicates kept, as the release) or ``unique``.
        mmd_max_slots: random subsample of slots per batch above this many (0 = no cap);
            bounds the n² kernel matrices.
        alignment_kwargs: extra arguments for the alignment loss (e.g. ``temperature``).
        experts: which experts phase 3 fuses (ablations: drop one, keep one).
        gate: ``bucket_scalar`` (release), ``network`` (paper), ``learned`` (bucket-blind)
            or ``none`` (equal weights).
        gate_init: release initial (start, end) logits per expert over buckets 1..B.
        train_id_in_phase3: keep training the ID expert in phase 3 (the release does).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    hidden_size: int = 64
    init_std: float = 0.02
    loss: Literal["ce", "bce"] = "ce"
    num_negatives: int = 1
    text_mlp_layers: int = 4
    text_dropout: float = 0.1
    fusion_dropout: float = 0.1
    alignment: str = "mmd_gaussian"
    gamma: float = 0.2
    anchoring: Literal["anchored", "non_anchored", "anchored_frozen_id"] = "anchored"
    include_padding: bool = False
    mmd_slots: Literal["all", "unique"] = "all"
    mmd_max_slots: int = 256
    alignment_kwargs: dict[str, Any] = field(default_factory=dict)
    experts: list[str] = field(default_factory=lambda: list(EXPERTS))
    gate: Literal["bucket_scalar", "network", "learned", "none"] = "bucket_scalar"
    gate_init: dict[str, list[float]] = field(
        default_factory=lambda: {"id": [1.0, 0.0], "align": [-4.0, -5.0], "llm": [0.0, 1.0]}
    )
    train_id_in_phase3: bool = True

    def __post_init__(self) -> None:
        bad = [e for e in self.experts if e not in EXPERTS]
        if bad or not self.experts or len(set(self.experts)) != len(self.experts):
            raise ValueError(f"experts must be a non-empty subset of {list(EXPERTS)} without repeats, got {self.experts}")


@METHODS.register("pad")
class PAD(Method):
    """PAD's three experts and phases; see the module docstring."""

    config_class = PADConfig
    needs_text = True

    def __init__(self, config: PADConfig, context: MethodContext) -> None:
        if context.text_embeddings is None:
            raise ValueError("PAD needs item text embeddings (MethodContext.text_embeddings)")
        if context.item_stats is None:
            raise ValueError("PAD needs item statistics (frequency buckets) for its gate")
        self.config = config
        super().__init__(config, context)
        d, L = config.hidden_size, context.max_len
        text = context.text_embeddings.float()

        def backbone() -> nn.Module:
            return build_backbone(config.backbone, config.backbone_config, d, L)

        def text_mlp() -> TextMLP:
            return TextMLP(text, d, num_hidden_layers=config.text_mlp_layers, dropout=config.text_dropout)

        self.id_expert = Expert(IDEmbedding(context.num_items, d, init_std=config.init_std), backbone())
        self.align_expert = Expert(
            ConcatFusion(IDEmbedding(context.num_items, d, init_std=config.init_std), text_mlp(), d,
                         dropout=config.fusion_dropout),
            backbone(),
        )
        self.llm_expert = Expert(text_mlp(), backbone())
        stats = context.item_stats
        bucket = torch.as_tensor(stats.bucket, dtype=torch.long)
        init = {k: tuple(v) for k, v in config.gate_init.items()}
        self.gate = build_gate(config.gate, bucket, stats.num_buckets, list(config.experts), d, init)

    # --- phases -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        phases = [Phase("pretrain", config_keys=PRETRAIN_KEYS)]
        if "align" in self.config.experts:
            phases.append(Phase("align", config_keys=ALIGN_KEYS))
        phases.append(Phase("disentangle", overrides={"lr": DISENTANGLE_LR}))
        return phases

    def begin_phase(self, name: str) -> None:
        super().begin_phase(name)
        if name == "align":
            # The alignment expert starts from the pre-trained ID table and backbone.
            self.align_expert.items.first.load_state_dict(self.id_expert.items.state_dict())
            self.align_expert.backbone.load_state_dict(self.id_expert.backbone.state_dict())

    def trainable_parameters(self) -> list[nn.Parameter]:
        if self.phase == "pretrain":
            mods = [self.id_expert]
        elif self.phase == "align":
            mods = [self.align_expert]
        else:
            mods = [self._expert(e) for e in self.config.experts if e != "id" or self.config.train_id_in_phase3]
            mods.append(self.gate)
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def _expert(self, name: str) -> Expert:
        return {"id": self.id_expert, "align": self.align_expert, "llm": self.llm_expert}[name]

    # --- losses -----------------------------------------------------------------------
    def losses(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        cfg = self.config
        if self.phase == "pretrain":
            return ranking_losses(self.id_expert, batch, cfg.loss, self.num_items, cfg.num_negatives)
        if self.phase == "align":
            return self._align_losses(batch)
        return self._disentangle_losses(batch)

    def _align_losses(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        cfg = self.config
        out: dict[str, torch.Tensor] = {}
        neg = None
        if cfg.anchoring != "non_anchored":
            if cfg.loss == "bce":
                neg = sample_negatives(batch.inputs, batch.targets, self.num_items, cfg.num_negatives)
                h = self.align_expert.encode(batch.inputs)
                pos = self.align_expert.logits(h, batch.targets.unsqueeze(-1)).squeeze(-1)
                out["rec"] = bce_loss(pos, self.align_expert.logits(h, neg), batch.targets > 0)
            else:
                out.update(ranking_losses(self.align_expert, batch, "ce", self.num_items))
        if cfg.alignment != "none" and cfg.gamma > 0:
            out["align"] = cfg.gamma * self._alignment_term(batch, neg)
        if not out:
            raise ValueError("non_anchored PAD with alignment 'none' has nothing to train in phase 'align'")
        return out

    def _alignment_term(self, batch: TrainBatch, neg: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        slots = [batch.inputs.reshape(-1), batch.targets.reshape(-1)]
        if neg is not None:
            slots.append(neg.reshape(-1))
        ids = torch.cat(slots)
        if not cfg.include_padding:
            ids = ids[ids > 0]
        if cfg.mmd_slots == "unique":
            ids = torch.unique(ids)
        if cfg.mmd_max_slots and len(ids) > cfg.mmd_max_slots:
            ids = ids[torch.randperm(len(ids), device=ids.device)[: cfg.mmd_max_slots]]
        id_side, text_side = self.align_expert.items.pair(ids)
        if cfg.anchoring == "anchored_frozen_id":
            id_side = id_side.detach()
        return alignment_loss(cfg.alignment, text_side, id_side, **cfg.alignment_kwargs)

    def _disentangle_losses(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        cfg = self.config
        experts = [self._expert(e) for e in cfg.experts]
        hs = [ex.encode(batch.inputs) for ex in experts]  # E × (B, L, d)
        mask = batch.targets > 0
        if cfg.loss == "ce":
            tables = [ex.items.all() for ex in experts]
            ids = torch.arange(self.num_items + 1, device=batch.inputs.device)
            w = self.gate.weights(ids, tables)  # (N+1) × E
            logits = sum(w[:, e] * (hs[e][mask] @ tables[e].t()) for e in range(len(experts)))
            logits[:, 0] = float("-inf")
            return {"rec": nn.functional.cross_entropy(logits, batch.targets[mask])}
        neg = sample_negatives(batch.inputs, batch.targets, self.num_items, cfg.num_negatives)
        pos = self._gated_logits(experts, hs, batch.targets.unsqueeze(-1)).squeeze(-1)
        return {"rec": bce_loss(pos, self._gated_logits(experts, hs, neg), mask)}

    def _gated_logits(self, experts: list[Expert], hs: list[torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        """(B, L, K) candidate ids -> gated logits Σ_e g_e · logit_e."""
        vecs = [ex.items(ids) for ex in experts]
        w = self.gate.weights(ids, vecs)  # B × L × K × E
        per = torch.stack([torch.einsum("bld,blkd->blk", h, v) for h, v in zip(hs, vecs)], -1)
        return (w * per).sum(-1)

    # --- scoring ----------------------------------------------------------------------
    def score_all(self, histories: torch.Tensor) -> torch.Tensor:
        if self.phase == "pretrain":
            return self.id_expert.all_logits(self.id_expert.sequence_vector(histories))
        if self.phase == "align":
            return self.align_expert.all_logits(self.align_expert.sequence_vector(histories))
        experts = [self._expert(e) for e in self.config.experts]
        tables = [ex.items.all() for ex in experts]
        w = getattr(self, "serving_gate", None)
        if w is None:
            ids = torch.arange(self.num_items + 1, device=histories.device)
            w = self.gate.weights(ids, tables)  # (N+1) × E
        return sum(w[:, e] * ex.all_logits(ex.sequence_vector(histories), tables[e])
                   for e, ex in enumerate(experts))

    def prepare_serving(self) -> None:
        """Precompute the per-item gate weights (they do not depend on the user)."""
        with torch.no_grad():
            experts = [self._expert(e) for e in self.config.experts]
            ids = torch.arange(self.num_items + 1, device=next(self.parameters()).device)
            w = self.gate.weights(ids, [ex.items.all() for ex in experts])
        self.register_buffer("serving_gate", w.detach().clone())

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        out = {"id": self.id_expert.items.all().detach(), "align": self.align_expert.items.all().detach(),
               "align_id": self.align_expert.items.first.all().detach(),
               "align_text": self.align_expert.items.second.all().detach(),
               "llm": self.llm_expert.items.all().detach(), "text": self.context.text_embeddings}
        return out

    def gate_table(self) -> torch.Tensor:
        """(B, E) expert weights per frequency bucket (bucket-based gates) for reporting."""
        stats = self.context.item_stats
        rows = []
        with torch.no_grad():
            device = next(self.parameters()).device
            ids = torch.arange(self.num_items + 1, device=device)
            tables = [self._expert(e).items.all() for e in self.config.experts]
            w = self.gate.weights(ids, tables).cpu()
            bucket = torch.as_tensor(stats.bucket)
            for b in range(1, stats.num_buckets + 1):
                sel = bucket == b
                sel[0] = False
                rows.append(w[sel].mean(0) if sel.any() else torch.full((len(tables),), float("nan")))
        return torch.stack(rows)
