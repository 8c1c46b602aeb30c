"""PAD: Pre-train, Align, and Disentangle (SIGIR 2025).

Phases run by the ordinary trainer:

1. ``pretrain`` — an ID expert (ID table + backbone) trained on next-item prediction.
2. ``align`` — the alignment expert: its own ID table and backbone (copied from phase 1), a
   text MLP over the frozen text embeddings, and item vectors
   GELU(Linear_2d→d(Dropout([id ; MLP(text)]))). Loss = rec + γ · alignment(MLP(text), id)
   over the batch's item slots (recommendation-anchored alignment).
   ``pretrain_llm`` (padrec, ``llm_pretrain``) — the LLM expert (frozen text -> its own MLP
   -> its own backbone) trained on its own, with logit adjustment so that it stays a text
   recommender for the rarely trained items instead of relearning popularity.
3. ``disentangle`` — ID, alignment and LLM experts fused per candidate item by a
   frequency-aware gate: logit = Σ_e g_e(bucket(item)) · logit_e. By default the three
   experts are frozen and only the gate trains; ``frozen_in_phase3: []`` with
   ``llm_pretrain: false`` is the release (every expert trains, the LLM expert from scratch).

See docs/PAD.md for every switch and where the release differs from the paper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from padrec.losses.alignment import alignment_loss
from padrec.losses.ranking import adjusted_cross_entropy, bce_loss, sample_negatives
from padrec.methods.base import METHODS, Method, MethodContext, Phase, ScoreFactors
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.methods.objectives import popularity_prior, ranking_losses
from padrec.methods.pad.config import PADConfig
from padrec.models.backbones.base import build_backbone
from padrec.models.experts import Expert
from padrec.models.gating import GateContext, build_gate
from padrec.models.items import ConcatFusion, IDEmbedding, TextMLP
from padrec.models.items.precomputed import grow_rows


def _run(fn, frozen: bool, *args: torch.Tensor) -> torch.Tensor:
    """``fn(*args)``, as a constant (no graph, no gradient) when ``frozen``."""
    if not frozen:
        return fn(*args)
    with torch.no_grad():
        return fn(*args).detach()


# Phase 3 fine-tunes experts that are already trained (only the LLM expert and the gate start
# from scratch); at the run's lr (3e-3 by default) it peaks after one epoch and then
# overfits on Prime Pantry, at 5e-4 it keeps improving (BENCHMARKS.md). Override with
# ``phase_train: {disentangle: {lr: ...}}``.
DISENTANGLE_LR = 5e-4
# With every expert frozen phase 3 trains only the gate (a few dozen scalars). On Prime Pantry
# the release's initial gate is already close to the best on validation, and training it on the
# training targets (30% in the cold buckets, against 45% of validation and 54% of test targets)
# moves it towards the warm items: at 1e-2 validation NDCG@10 falls from the first epoch on
# (0.0497 -> 0.0462), at 1e-3 it peaks at epoch 1 (0.0522), at 1e-4 it stays at 0.0524.
GATE_ONLY_LR = 1e-3
EXPERT_MODULES = {"id": "id_expert", "align": "align_expert", "llm": "llm_expert"}
# the expert each phase before disentangle scores with
PHASE_EXPERT = {"pretrain": "id", "pretrain_llm": "llm", "align": "align"}


@METHODS.register("pad")
class PAD(Method):
    """PAD's three experts and phases; see the module docstring."""

    config_class = PADConfig
    requires_text = True

    def __init__(self, config: PADConfig, context: MethodContext) -> None:
        if context.item_stats is None:
            raise ValueError("PAD needs item statistics (frequency buckets) for its gate")
        super().__init__(config, context)
        d, L = config.hidden_size, context.max_len
        text = context.text_embeddings.float()

        def backbone() -> nn.Module:
            return build_backbone(config.backbone, config.backbone_config, d, L)

        def text_mlp() -> TextMLP:
            return TextMLP(
                text,
                d,
                num_hidden_layers=config.text_mlp_layers,
                dropout=config.text_dropout,
                final_activation=config.text_final_activation,
                input_norm=config.text_input_norm,
            )

        self.id_expert = Expert(IDEmbedding(context.num_items, d, init_std=config.init_std), backbone())
        self.align_expert = Expert(
            ConcatFusion(
                IDEmbedding(context.num_items, d, init_std=config.init_std),
                text_mlp(),
                d,
                dropout=config.fusion_dropout,
                activation=config.fusion_activation,
                init=config.fusion_init,
            ),
            backbone(),
        )
        self.llm_expert = Expert(text_mlp(), backbone())
        stats = context.item_stats
        bucket = torch.as_tensor(stats.bucket, dtype=torch.long)
        gate_ctx = GateContext(bucket, stats.num_buckets, list(config.experts), d)
        self.gate = build_gate(config.gate, config.gate_settings(), gate_ctx)
        tau = max(config.logit_adjustment, config.llm_logit_adjustment)
        self.register_buffer("log_prior", popularity_prior(context, tau), persistent=False)
        # per-item gate weights, (N+1) × E, precomputed by for_serving (they do not depend on the user)
        self.serving_gate: torch.Tensor | None
        self.register_buffer("serving_gate", None)

    # --- phases -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        cfg = self.config
        phases = [Phase("pretrain", losses=self._pretrain_losses, score=self._expert_score("id"), trains=["id_expert"])]
        if "llm" in cfg.experts and cfg.llm_pretrain:
            # Independent of the ID expert: changing ID or alignment settings does not retrain it.
            phases.append(
                Phase(
                    "pretrain_llm",
                    losses=self._llm_losses,
                    score=self._expert_score("llm"),
                    trains=["llm_expert"],
                    after=[],
                )
            )
        if "align" in cfg.experts:
            phases.append(
                Phase(
                    "align",
                    losses=self._align_losses,
                    score=self._expert_score("align"),
                    trains=["align_expert"],
                    start=self._start_align,
                    after=["pretrain"],
                )
            )
        gate_only = set(cfg.frozen_in_phase3) == set(cfg.experts)
        trained = [EXPERT_MODULES[e] for e in cfg.experts if e not in cfg.frozen_in_phase3]
        phases.append(
            Phase(
                "disentangle",
                losses=self._disentangle_losses,
                score=self._fused_score,
                trains=[*trained, "gate"],
                frozen=[EXPERT_MODULES[e] for e in cfg.frozen_in_phase3],
                overrides={"lr": GATE_ONLY_LR if gate_only else DISENTANGLE_LR},
            )
        )
        return phases

    def _start_align(self) -> None:
        """The alignment expert starts from the pre-trained ID table and backbone."""
        self.align_expert.items.first.load_state_dict(self.id_expert.items.state_dict())
        self.align_expert.backbone.load_state_dict(self.id_expert.backbone.state_dict())

    def expert(self, name: str) -> Expert:
        """The expert called ``name`` (``id``, ``align`` or ``llm``), e.g. to score it alone."""
        return self.get_submodule(EXPERT_MODULES[name])

    def _expert_score(self, name: str):
        return lambda histories: self.expert(name).score_all(histories)

    # --- losses -----------------------------------------------------------------------
    def _pretrain_losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(self.id_expert, batch, cfg.loss, self.num_items, cfg.num_negatives)

    def _llm_losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(
            self.llm_expert,
            batch,
            cfg.loss,
            self.num_items,
            cfg.num_negatives,
            self.log_prior,
            cfg.llm_logit_adjustment,
        )

    def _align_losses(self, batch: TrainBatch, step: StepInfo | None = None) -> dict[str, torch.Tensor]:
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

    def _disentangle_losses(self, batch: TrainBatch, step: StepInfo | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        experts = [self.expert(e) for e in cfg.experts]
        frozen = [e in cfg.frozen_in_phase3 for e in cfg.experts]
        mask = batch.targets > 0
        hs = [_run(ex.encode, fixed, batch.inputs) for ex, fixed in zip(experts, frozen)]  # E × (B, L, d)
        if cfg.loss == "ce":
            tables = [_run(ex.items.all, fixed) for ex, fixed in zip(experts, frozen)]
            ids = torch.arange(self.num_items + 1, device=batch.inputs.device)
            w = self.gate.weights(ids, tables)  # (N+1) × E
            logits = sum(w[:, e] * (hs[e][mask] @ tables[e].t()) for e in range(len(experts)))
            return {"rec": adjusted_cross_entropy(logits, batch.targets[mask], self.log_prior, cfg.logit_adjustment)}
        neg = sample_negatives(batch.inputs, batch.targets, self.num_items, cfg.num_negatives)
        pos = self._gated_logits(experts, frozen, hs, batch.targets.unsqueeze(-1)).squeeze(-1)
        neg_logits = self._gated_logits(experts, frozen, hs, neg)
        if cfg.logit_adjustment:
            pos = pos + cfg.logit_adjustment * self.log_prior[batch.targets]
            neg_logits = neg_logits + cfg.logit_adjustment * self.log_prior[neg]
        return {"rec": bce_loss(pos, neg_logits, mask)}

    def _gated_logits(
        self, experts: list[Expert], frozen: list[bool], hs: list[torch.Tensor], ids: torch.Tensor
    ) -> torch.Tensor:
        """(B, L, K) candidate ids -> gated logits Σ_e g_e · logit_e."""
        vecs = [_run(ex.items.candidates, fixed, ids) for ex, fixed in zip(experts, frozen)]
        w = self.gate.weights(ids, vecs)  # B × L × K × E
        per = torch.stack([torch.einsum("bld,blkd->blk", h, v) for h, v in zip(hs, vecs)], -1)
        return (w * per).sum(-1)

    # --- scoring ----------------------------------------------------------------------
    def _gate_weights(self, device: torch.device) -> torch.Tensor:
        """(N+1) × E expert weights of every item (precomputed when serving)."""
        if self.serving_gate is not None:
            return self.serving_gate
        ids = torch.arange(self.num_items + 1, device=device)
        return self.gate.weights(ids, [self.expert(e).items.all() for e in self.config.experts])

    def score_parts(self, histories: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each expert's gated logits, (B, N+1) per expert; their sum is the fused score."""
        if self.phase != "disentangle":
            return {self.phase: self.score_all(histories)}
        w = self._gate_weights(histories.device)
        return {e: w[:, i] * self.expert(e).score_all(histories) for i, e in enumerate(self.config.experts)}

    def _fused_score(self, histories: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, N+1) Σ_e g_e(item) · logit_e as one product: the experts' sequence
        vectors side by side against their tables scaled by each item's gate weight (one pass
        over the (B, N+1) scores instead of one per expert and one per sum)."""
        experts = [self.expert(e) for e in self.config.experts]
        tables = [ex.items.all() for ex in experts]
        w = self.serving_gate
        if w is None:
            ids = torch.arange(self.num_items + 1, device=histories.device)
            w = self.gate.weights(ids, tables)  # (N+1) × E
        query = torch.cat([ex.sequence_vector(histories) for ex in experts], dim=-1)  # B × E·d
        items = torch.cat([w[:, e : e + 1] * t for e, t in enumerate(tables)], dim=1)  # (N+1) × E·d
        return query @ items.t()

    def for_serving(self, copy_model: bool = True) -> PAD:
        """As :meth:`Method.for_serving`, with the per-item gate weights precomputed."""
        served = super().for_serving(copy_model)
        with torch.no_grad():
            device = served.id_expert.items.all().device
            served.serving_gate = served._gate_weights(device).detach().clone()
        return served

    def score_factors(self) -> ScoreFactors | None:
        """The fused score as one inner product: the experts' sequence vectors side by side
        against their candidate tables scaled by each item's gate weight (one block per
        expert); phases before ``disentangle`` score as one expert."""
        names = list(self.config.experts) if self.phase == "disentangle" else [PHASE_EXPERT[self.phase]]
        experts = [self.expert(e) for e in names]
        tables = [ex.items.all() for ex in experts]
        if self.phase == "disentangle":
            w = self._gate_weights(tables[0].device)
            tables = [w[:, i : i + 1] * t for i, t in enumerate(tables)]
        parts, start = {}, 0
        for name, t in zip(names, tables):
            parts[name] = slice(start, start + t.shape[1])
            start += t.shape[1]

        def query(histories: torch.Tensor) -> torch.Tensor:
            return torch.cat([ex.sequence_vector(histories) for ex in experts], dim=-1)

        def rows(ids: torch.Tensor) -> torch.Tensor:
            cols = [ex.items.all()[ids] for ex in experts]
            if self.phase == "disentangle":
                w = self._gate_weights(ids.device)[ids]
                cols = [w[:, i : i + 1] * c for i, c in enumerate(cols)]
            return torch.cat(cols, dim=1)

        return ScoreFactors(torch.cat(tables, dim=1), query, parts, rows)

    @torch.no_grad()
    def add_items(self, ids: torch.Tensor, text: torch.Tensor) -> None:
        """As :meth:`Method.add_items`; a new item has no training interactions, so the gate
        weighs it as an item of the coldest frequency bucket, with the weight of every expert
        that cannot read its text (the ID expert) moved to the others in proportion."""
        old_n = self.num_items
        super().add_items(ids, text)
        if self.num_items == old_n or self.serving_gate is None:
            return
        new = torch.arange(old_n + 1, self.num_items + 1, device=self.serving_gate.device)
        bucket = getattr(self.gate, "bucket", None)
        if isinstance(bucket, torch.Tensor):
            bucket = grow_rows(bucket, self.num_items + 1)
            bucket[new] = self.context.item_stats.num_buckets - 1  # gates store buckets from 0
            self.gate.bucket = bucket
        experts = [self.expert(e) for e in self.config.experts]
        w = self.gate.weights(new, [ex.items.all()[new] for ex in experts])
        reads = torch.tensor([ex.items.reads_text for ex in experts], device=w.device, dtype=w.dtype)
        w = w * reads
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        gate = grow_rows(self.serving_gate, self.num_items + 1)
        gate[new] = w.to(gate.dtype)
        self.serving_gate = gate

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        out = {
            "id": self.id_expert.items.all().detach(),
            "align": self.align_expert.items.all().detach(),
            "align_id": self.align_expert.items.first.all().detach(),
            "align_text": self.align_expert.items.second.all().detach(),
            "llm": self.llm_expert.items.all().detach(),
            "text": self.context.text_embeddings,
        }
        return out

    def report(self) -> dict[str, Any]:
        """The mean expert weights per frequency bucket (rows = buckets 1..B, warmest first)."""
        return {
            "experts": list(self.config.experts),
            "gate_per_bucket": [[round(float(w), 4) for w in row] for row in self.gate_table()],
        }

    def gate_table(self) -> torch.Tensor:
        """(B, E) expert weights per frequency bucket (bucket-based gates) for reporting."""
        stats = self.context.item_stats
        rows = []
        with torch.no_grad():
            device = next(self.parameters()).device
            ids = torch.arange(self.num_items + 1, device=device)
            tables = [self.expert(e).items.all() for e in self.config.experts]
            w = self.gate.weights(ids, tables).cpu()
            bucket = torch.as_tensor(stats.bucket)
            for b in range(1, stats.num_buckets + 1):
                sel = bucket == b
                sel[0] = False
                rows.append(w[sel].mean(0) if sel.any() else torch.full((len(tables),), float("nan")))
        return torch.stack(rows)
