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

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from padrec.losses.alignment import alignment_loss
from padrec.losses.ranking import adjusted_cross_entropy, bce_loss, sample_negatives
from padrec.methods.base import METHODS, Method, MethodContext, Phase, TrainBatch
from padrec.methods.sequential import build_backbone, check_logit_adjustment, popularity_prior, ranking_losses
from padrec.models.backbones import BACKBONES
from padrec.models.experts import Expert
from padrec.models.gating import build_gate
from padrec.models.items import ConcatFusion, IDEmbedding, TextMLP

EXPERTS = ("id", "align", "llm")


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
# Keys of PADConfig each phase depends on (a finished phase is reused when these are unchanged).
PRETRAIN_KEYS = ["backbone", "backbone_config", "hidden_size", "loss", "num_negatives", "init_std"]
ALIGN_KEYS = PRETRAIN_KEYS + [
    "text_mlp_layers",
    "text_dropout",
    "text_final_activation",
    "text_input_norm",
    "fusion_dropout",
    "fusion_init",
    "fusion_activation",
    "alignment",
    "gamma",
    "anchoring",
    "include_padding",
    "mmd_slots",
    "mmd_max_slots",
    "alignment_kwargs",
]
# Added after the 3-seed benchmark runs: at these values the align phase does what it did before.
ALIGN_ADDED_KEYS = {"fusion_init": "xavier_normal", "fusion_activation": "gelu"}
PRETRAIN_LLM_KEYS = PRETRAIN_KEYS + [
    "text_mlp_layers",
    "text_dropout",
    "text_final_activation",
    "text_input_norm",
    "llm_logit_adjustment",
]


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
            (release: 4; padrec: 0, a linear adapter, which converges several times faster on
            Prime Pantry and keeps the text's neighbourhoods).
        text_dropout: dropout inside the text MLP (release 0.1).
        text_final_activation: GELU after the text MLP's last Linear (release: yes). Without
            it item vectors are unconstrained, as ID embeddings are.
        text_input_norm: rescaling of the frozen text before the MLP: ``none`` (release),
            ``center`` or ``standardize`` (per-dimension; unit-norm sentence embeddings reach
            the MLP at unit scale).
        fusion_dropout: dropout before the alignment expert's concat fusion.
        fusion_init: initialisation of the fusion Linear: ``xavier_normal`` (release),
            ``passthrough`` (starts as the phase-1 ID vector, text weights 0; see
            ``ConcatFusion``), or ``auto``: the release's on a backbone with
            ``bounded_output`` (SASRec, GRU4Rec), ``passthrough`` otherwise (Caser, where
            the align phase does not train from a random fusion; BENCHMARKS.md §4.7).
        fusion_activation: activation after the fusion Linear (release ``gelu``).
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
        llm_pretrain: train the LLM expert on its own in a phase ``pretrain_llm`` (after
            ``align``), so that it enters phase 3 as a standalone text recommender; False =
            the release, which trains it from scratch inside phase 3.
        llm_logit_adjustment: τ of the LLM expert's own training in ``pretrain_llm`` (see
            ``logit_adjustment``): with τ > 0 it does not learn to push rarely trained items
            down, which is what the cold buckets need from it.
        frozen_in_phase3: experts whose weights phase 3 keeps fixed (they run in eval mode
            without gradients, which also makes an epoch cheaper); the release trains all.
            ``llm`` can be frozen only with ``llm_pretrain``; with every expert frozen phase 3
            trains the gate alone.
        logit_adjustment: τ ≥ 0 for phase 3: the gated logits are trained with τ·log π_i added
            (π = smoothed training popularity), so the fused scores are not pushed down for an
            item's rarity (0 = plain loss, the paper's setting). Scoring uses the raw logits.
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    hidden_size: int = 64
    init_std: float = 0.02
    loss: Literal["ce", "bce"] = "ce"
    num_negatives: int = 1
    text_mlp_layers: int = 0
    text_dropout: float = 0.1
    text_final_activation: bool = False
    text_input_norm: Literal["none", "center", "standardize"] = "standardize"
    fusion_dropout: float = 0.1
    fusion_init: Literal["auto", "xavier_normal", "passthrough"] = "auto"
    fusion_activation: Literal["gelu", "relu", "tanh", "identity"] = "gelu"
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
    llm_pretrain: bool = True
    llm_logit_adjustment: float = 0.5
    frozen_in_phase3: list[str] = field(default_factory=lambda: list(EXPERTS))
    logit_adjustment: float = 0.0

    def __post_init__(self) -> None:
        bad = [e for e in self.experts if e not in EXPERTS]
        if bad or not self.experts or len(set(self.experts)) != len(self.experts):
            raise ValueError(
                f"experts must be a non-empty subset of {list(EXPERTS)} without repeats, got {self.experts}"
            )
        # Experts left out of an ablation are simply not frozen (the default names all three).
        self.frozen_in_phase3 = [e for e in self.frozen_in_phase3 if e in self.experts]
        if "llm" in self.frozen_in_phase3 and not self.llm_pretrain:
            raise ValueError(
                "without llm_pretrain the LLM expert is trained from scratch in phase 3 and cannot be "
                "frozen there (remove 'llm' from frozen_in_phase3)"
            )
        check_logit_adjustment(self.logit_adjustment)
        check_logit_adjustment(self.llm_logit_adjustment)
        if self.fusion_init == "auto":
            # resolved here, so run directories record (and phase fingerprints see) what ran
            self.fusion_init = "xavier_normal" if BACKBONES.get(self.backbone).bounded_output else "passthrough"


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
        init = {k: tuple(v) for k, v in config.gate_init.items()}
        self.gate = build_gate(config.gate, bucket, stats.num_buckets, list(config.experts), d, init)
        tau = max(config.logit_adjustment, config.llm_logit_adjustment)
        self.register_buffer("log_prior", popularity_prior(context, tau), persistent=False)

    # --- phases -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        phases = [Phase("pretrain", config_keys=PRETRAIN_KEYS)]
        if "llm" in self.config.experts and self.config.llm_pretrain:
            # Independent of the ID expert: changing ID or alignment settings does not retrain it.
            phases.append(Phase("pretrain_llm", config_keys=PRETRAIN_LLM_KEYS, after=[]))
        if "align" in self.config.experts:
            phases.append(Phase("align", config_keys=ALIGN_KEYS, after=["pretrain"], added_keys=ALIGN_ADDED_KEYS))
        gate_only = set(self.config.frozen_in_phase3) == set(self.config.experts)
        phases.append(
            Phase(
                "disentangle",
                overrides={"lr": GATE_ONLY_LR if gate_only else DISENTANGLE_LR},
                added_keys=ALIGN_ADDED_KEYS,
            )
        )
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
        elif self.phase == "pretrain_llm":
            mods = [self.llm_expert]
        else:
            mods = [self.expert(e) for e in self.config.experts if e not in self.config.frozen_in_phase3]
            mods.append(self.gate)
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> "PAD":
        """As ``nn.Module.train``; in phase 3 experts in ``frozen_in_phase3`` stay in eval mode."""
        super().train(mode)
        if self.phase == "disentangle":
            for e in self.config.frozen_in_phase3:
                self.expert(e).eval()
        return self

    def expert(self, name: str) -> Expert:
        """The expert called ``name`` (``id``, ``align`` or ``llm``), e.g. to score it alone."""
        return {"id": self.id_expert, "align": self.align_expert, "llm": self.llm_expert}[name]

    # --- losses -----------------------------------------------------------------------
    def losses(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        cfg = self.config
        if self.phase == "pretrain":
            return ranking_losses(self.id_expert, batch, cfg.loss, self.num_items, cfg.num_negatives)
        if self.phase == "pretrain_llm":
            return ranking_losses(
                self.llm_expert,
                batch,
                cfg.loss,
                self.num_items,
                cfg.num_negatives,
                self.log_prior,
                cfg.llm_logit_adjustment,
            )
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
        vecs = [_run(ex.items, fixed, ids) for ex, fixed in zip(experts, frozen)]
        w = self.gate.weights(ids, vecs)  # B × L × K × E
        per = torch.stack([torch.einsum("bld,blkd->blk", h, v) for h, v in zip(hs, vecs)], -1)
        return (w * per).sum(-1)

    # --- scoring ----------------------------------------------------------------------
    def score_all(self, histories: torch.Tensor) -> torch.Tensor:
        if self.phase == "pretrain":
            return self.id_expert.all_logits(self.id_expert.sequence_vector(histories))
        if self.phase == "align":
            return self.align_expert.all_logits(self.align_expert.sequence_vector(histories))
        if self.phase == "pretrain_llm":
            return self.llm_expert.all_logits(self.llm_expert.sequence_vector(histories))
        experts = [self.expert(e) for e in self.config.experts]
        tables = [ex.items.all() for ex in experts]
        w = getattr(self, "serving_gate", None)
        if w is None:
            ids = torch.arange(self.num_items + 1, device=histories.device)
            w = self.gate.weights(ids, tables)  # (N+1) × E
        return sum(w[:, e] * ex.all_logits(ex.sequence_vector(histories), tables[e]) for e, ex in enumerate(experts))

    def prepare_serving(self) -> None:
        """Precompute the per-item gate weights (they do not depend on the user)."""
        with torch.no_grad():
            experts = [self.expert(e) for e in self.config.experts]
            ids = torch.arange(self.num_items + 1, device=next(self.parameters()).device)
            w = self.gate.weights(ids, [ex.items.all() for ex in experts])
        self.register_buffer("serving_gate", w.detach().clone())

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
