"""MAKE (Sheng et al., CIKM 2024, "Enhancing Taobao Display Advertising with Multimodal
Representations": the Multimodal Knowledge Extractor) as PAD describes it (PAD §4.1.3): a
two-experts structure whose LLM expert is pre-trained first, in the same way as MoRec.

MAKE's point is that the parameters reading multimodal content need many more epochs than the
ID model, which overfits after about one: it trains the multimodal module on its own for
several epochs, then lets the ID-based model use it. Phases run by the ordinary trainer:

1. ``pretrain_llm`` — the LLM expert (frozen item text → text MLP → its own backbone, MoRec)
   trained alone on next-item prediction.
2. ``fuse`` — the ID expert (ID table + backbone, from scratch) and the pre-trained LLM expert
   fused per candidate item i: ``logit = g_id(i) · logit_id + g_llm(i) · logit_llm`` with a
   registered gate (default ``learned``: two softmax-normalised weights, the same for every
   item; PAD's frequency-aware gates are PAD's contribution, not MAKE's). Both experts and the
   gate train (MAKE keeps updating its module with the downstream model; ``freeze_llm``
   keeps the LLM expert fixed instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from padrec.config import setting
from padrec.losses.ranking import adjusted_cross_entropy, bce_loss, sample_negatives
from padrec.methods.base import METHODS, Method, MethodContext, Phase, ScoreFactors
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.methods.objectives import MAX_HIDDEN_SIZE, MAX_NEGATIVES, ranking_losses
from padrec.models.backbones.base import backbone_config, build_backbone
from padrec.models.experts import Expert
from padrec.models.gating import GATES, GateContext, build_gate
from padrec.models.items import IDEmbedding, TextMLP
from padrec.models.items.precomputed import grow_rows

LLM = ("pretrain_llm", "fuse")
FUSE = ("fuse",)
EXPERTS = ("id", "llm")


@dataclass
class MAKEConfig:
    """MAKE's switches (defaults: padrec's PAD protocol; MAKE itself is a CTR method).

    Attributes:
        backbone: registered backbone of both experts (PAD: SASRec).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` are filled in).
        hidden_size: d (padrec's protocol: 64).
        init_std: std of the ID table's normal initialisation (padrec's default 0.02).
        loss: ``ce`` (full softmax, padrec's default) or ``bce`` (sampled negatives; PAD's
            protocol and MAKE's CTR loss), in both phases.
        num_negatives: negatives per position for ``bce`` (PAD: 1).
        text_mlp_layers, text_dropout, text_final_activation, text_input_norm: the LLM
            expert's text MLP (padrec's MoRec/PAD defaults: one Linear over standardized text).
        gate: a registered gate over the two experts: ``learned`` (default), ``none`` (1/2
            each), ``bucket_scalar`` or ``network`` (PAD's frequency-aware gates).
        gate_config: the gate's own fields (``bucket_scalar``: ``init``, keyed ``id``/``llm``).
        freeze_llm: keep the pre-trained LLM expert fixed in ``fuse`` (default: it trains on).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = setting(default_factory=dict)
    hidden_size: int = 64
    init_std: float = setting(0.02, phases=FUSE)
    loss: Literal["ce", "bce"] = "ce"
    num_negatives: int = 1
    text_mlp_layers: int = setting(0, phases=LLM)
    text_dropout: float = setting(0.1, phases=LLM)
    text_final_activation: bool = setting(False, phases=LLM)
    text_input_norm: Literal["none", "center", "standardize"] = setting("standardize", phases=LLM)
    gate: str = setting("learned", phases=FUSE)
    gate_config: dict[str, Any] = setting(default_factory=dict, phases=FUSE)
    freeze_llm: bool = setting(False, phases=FUSE)

    def __post_init__(self) -> None:
        if not 1 <= self.hidden_size <= MAX_HIDDEN_SIZE:
            raise ValueError(f"hidden_size must be between 1 and {MAX_HIDDEN_SIZE}, got {self.hidden_size}")
        if not 1 <= self.num_negatives <= MAX_NEGATIVES:
            raise ValueError(f"num_negatives must be between 1 and {MAX_NEGATIVES}, got {self.num_negatives}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        if self.text_mlp_layers < 0 or not 0.0 <= self.text_dropout < 1.0:
            raise ValueError("text_mlp_layers must be >= 0 and text_dropout in [0, 1)")
        if self.gate not in GATES:
            raise ValueError(f"gate: expected one of {GATES.names()}, got {self.gate!r}")
        backbone_config(self.backbone, self.backbone_config, self.hidden_size)


def _run(fn, frozen: bool, *args: torch.Tensor) -> torch.Tensor:
    """``fn(*args)``, as a constant (no graph) when ``frozen``."""
    if not frozen:
        return fn(*args)
    with torch.no_grad():
        return fn(*args).detach()


@METHODS.register("make")
class MAKE(Method):
    """MAKE's pre-trained LLM expert fused with an ID expert (module docstring)."""

    config_class = MAKEConfig
    requires_text = True

    def __init__(self, config: MAKEConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        d, L = config.hidden_size, context.max_len
        self.id_expert = Expert(
            IDEmbedding(context.num_items, d, init_std=config.init_std),
            build_backbone(config.backbone, config.backbone_config, d, L),
        )
        text = TextMLP(
            context.text_embeddings.float(),
            d,
            num_hidden_layers=config.text_mlp_layers,
            dropout=config.text_dropout,
            final_activation=config.text_final_activation,
            input_norm=config.text_input_norm,
        )
        self.llm_expert = Expert(text, build_backbone(config.backbone, config.backbone_config, d, L))
        stats = context.item_stats
        if stats is not None:
            bucket, buckets = torch.as_tensor(stats.bucket, dtype=torch.long), stats.num_buckets
        else:  # gates that ignore buckets (learned, none) need no statistics
            bucket, buckets = torch.ones(context.num_items + 1, dtype=torch.long), 1
        self.gate = build_gate(config.gate, config.gate_config, GateContext(bucket, buckets, list(EXPERTS), d))
        # per-item gate weights, (N+1) × 2, precomputed by for_serving
        self.serving_gate: torch.Tensor | None
        self.register_buffer("serving_gate", None)

    @property
    def experts(self) -> list[Expert]:
        """[ID expert, LLM expert]."""
        return [self.id_expert, self.llm_expert]

    def phases(self) -> list[Phase]:
        """``pretrain_llm`` (the LLM expert alone), then ``fuse`` (both experts and the gate)."""
        frozen = self.config.freeze_llm
        return [
            Phase(
                "pretrain_llm",
                losses=self._llm_losses,
                score=self.llm_expert.score_all,
                trains=["llm_expert"],
                after=[],
            ),
            Phase(
                "fuse",
                losses=self._fuse_losses,
                score=self._fused_score,
                trains=["id_expert", "gate"] if frozen else ["id_expert", "llm_expert", "gate"],
                frozen=["llm_expert"] if frozen else [],
            ),
        ]

    # --- losses -----------------------------------------------------------------------
    def _llm_losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(self.llm_expert, batch, cfg.loss, self.num_items, cfg.num_negatives)

    def _fuse_losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        """Next-item loss of ``Σ_e g_e(i) · logit_e(i)``: full softmax or BCE with negatives."""
        cfg = self.config
        fixed = [False, cfg.freeze_llm]
        mask = batch.targets > 0
        hs = [_run(ex.encode, f, batch.inputs) for ex, f in zip(self.experts, fixed)]  # 2 × (B, L, d)
        if cfg.loss == "ce":
            tables = [_run(ex.items.all, f) for ex, f in zip(self.experts, fixed)]
            w = self.gate.weights(torch.arange(self.num_items + 1, device=batch.inputs.device), tables)
            logits = sum(w[:, e] * (hs[e][mask] @ tables[e].t()) for e in range(2))
            return {"rec": adjusted_cross_entropy(logits, batch.targets[mask])}
        neg = sample_negatives(batch.inputs, batch.targets, self.num_items, cfg.num_negatives)
        pos = self.gated_logits(hs, batch.targets.unsqueeze(-1), fixed).squeeze(-1)
        return {"rec": bce_loss(pos, self.gated_logits(hs, neg, fixed), mask)}

    def gated_logits(self, hs: list[torch.Tensor], ids: torch.Tensor, fixed: list[bool]) -> torch.Tensor:
        """(B, L, d) sequence vectors per expert and (B, L, K) candidates -> (B, L, K) fused logits."""
        vecs = [_run(ex.items.candidates, f, ids) for ex, f in zip(self.experts, fixed)]
        w = self.gate.weights(ids, vecs)  # B × L × K × 2
        per = torch.stack([torch.einsum("bld,blkd->blk", h, v) for h, v in zip(hs, vecs)], -1)
        return (w * per).sum(-1)

    # --- scoring ----------------------------------------------------------------------
    def gate_weights(self, device: torch.device) -> torch.Tensor:
        """(N+1) × 2 expert weights of every item (precomputed when serving)."""
        if self.serving_gate is not None:
            return self.serving_gate
        ids = torch.arange(self.num_items + 1, device=device)
        return self.gate.weights(ids, [ex.items.all() for ex in self.experts])

    def _fused_score(self, histories: torch.Tensor) -> torch.Tensor:
        return sum(self.score_parts(histories).values())

    def score_parts(self, histories: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each expert's gated logits, (B, N+1); their sum is the score (``pretrain_llm``: the
        LLM expert's scores alone)."""
        if self.phase != "fuse":
            return {"llm": self.llm_expert.score_all(histories)}
        w = self.gate_weights(histories.device)
        return {name: w[:, e] * ex.score_all(histories) for e, (name, ex) in enumerate(zip(EXPERTS, self.experts))}

    def score_factors(self) -> ScoreFactors:
        """The fused score as one inner product: both sequence vectors side by side against the
        candidate tables scaled by each item's gate weights (one column block per expert)."""
        fused = self.phase == "fuse"
        names, experts = (list(EXPERTS), self.experts) if fused else (["llm"], [self.llm_expert])

        def rows(ids: torch.Tensor) -> torch.Tensor:
            cols = [ex.items.all()[ids] for ex in experts]
            if fused:
                w = self.gate_weights(ids.device)[ids]
                cols = [w[:, e : e + 1] * c for e, c in enumerate(cols)]
            return torch.cat(cols, dim=1)

        def query(histories: torch.Tensor) -> torch.Tensor:
            return torch.cat([ex.sequence_vector(histories) for ex in experts], dim=-1)

        table = rows(torch.arange(self.num_items + 1, device=experts[0].items.all().device))
        d = self.config.hidden_size
        parts = {name: slice(e * d, (e + 1) * d) for e, name in enumerate(names)}
        return ScoreFactors(table, query, parts, rows)

    # --- serving ----------------------------------------------------------------------
    def for_serving(self, copy_model: bool = True) -> MAKE:
        """As :meth:`Method.for_serving`, with the per-item gate weights precomputed."""
        served = super().for_serving(copy_model)
        with torch.no_grad():
            served.serving_gate = served.gate_weights(served.id_expert.items.all().device).detach().clone()
        return served

    @torch.no_grad()
    def add_items(self, ids: torch.Tensor, text: torch.Tensor) -> None:
        """As :meth:`Method.add_items`. A new item has no ID vector (zeros), so its gate weights
        are those of the coldest bucket (bucket gates) with the ID expert's weight moved to the
        LLM expert (PAD's rule for new items)."""
        old_n = self.num_items
        super().add_items(ids, text)
        if self.num_items == old_n or self.serving_gate is None:
            return
        new = torch.arange(old_n + 1, self.num_items + 1, device=self.serving_gate.device)
        bucket = getattr(self.gate, "bucket", None)
        if isinstance(bucket, torch.Tensor):
            bucket = grow_rows(bucket, self.num_items + 1)
            stats = self.context.item_stats
            bucket[new] = stats.num_buckets - 1 if stats is not None else 0  # gates store buckets from 0
            self.gate.bucket = bucket
        w = self.gate.weights(new, [ex.items.all()[new] for ex in self.experts])
        w = torch.stack([torch.zeros_like(w[:, 0]), w.sum(-1)], dim=-1)
        gate = grow_rows(self.serving_gate, self.num_items + 1)
        gate[new] = w.to(gate.dtype)
        self.serving_gate = gate

    def report(self) -> dict[str, Any]:
        """The mean expert weights over the catalogue (ID, LLM)."""
        with torch.no_grad():
            w = self.gate_weights(next(self.parameters()).device)[1:].mean(0)
        return {"experts": list(EXPERTS), "gate_mean": [round(float(v), 4) for v in w]}

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id`` and ``llm`` candidate tables, (N+1)×d."""
        with torch.no_grad():
            return {"id": self.id_expert.items.all().detach(), "llm": self.llm_expert.items.all().detach()}
