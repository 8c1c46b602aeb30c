"""PAD's configuration: every switch of the paper, the release and padrec, with the phases each reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from padrec.config import setting
from padrec.losses.alignment import ALIGNMENT_LOSSES
from padrec.methods.objectives import check_common_fields
from padrec.models.backbones.base import BACKBONES
from padrec.models.gating import GATES

EXPERTS = ("id", "align", "llm")
# Which phases read which fields (a field without ``phases`` is read by every phase).
TEXT = ("pretrain_llm", "align", "disentangle")
ALIGN = ("align", "disentangle")
LLM = ("pretrain_llm", "disentangle")
FUSE = ("disentangle",)


@dataclass
class PADConfig:
    """PAD's switches (defaults: padrec's strong setting; ``configs/pad_release.yaml`` = release).

    Each field's metadata names the phases whose results depend on it (fields without it:
    every phase), so a finished phase is reused when only later phases' settings change.

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
        gate_config: the gate's own fields beyond ``gate_init`` (e.g. ``bucket_dim`` of the
            network gate).
        experts: which experts phase 3 fuses (ablations: drop one, keep one).
        gate: a registered gate: ``bucket_scalar`` (release), ``network`` (paper),
            ``learned`` (bucket-blind) or ``none`` (equal weights).
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
    backbone_config: dict[str, Any] = setting(default_factory=dict)
    hidden_size: int = 64
    init_std: float = 0.02
    loss: Literal["ce", "bce"] = "ce"
    num_negatives: int = 1
    text_mlp_layers: int = setting(0, phases=TEXT)
    text_dropout: float = setting(0.1, phases=TEXT)
    text_final_activation: bool = setting(False, phases=TEXT)
    text_input_norm: Literal["none", "center", "standardize"] = setting("standardize", phases=TEXT)
    fusion_dropout: float = setting(0.1, phases=ALIGN)
    # fusion_init and fusion_activation were added after runs existed; at their legacy values
    # they stay out of fingerprints (see padrec.config.setting).
    fusion_init: Literal["auto", "xavier_normal", "passthrough"] = setting("auto", phases=ALIGN, legacy="xavier_normal")
    fusion_activation: Literal["gelu", "relu", "tanh", "identity"] = setting("gelu", phases=ALIGN, legacy="gelu")
    alignment: str = setting("mmd_gaussian", phases=ALIGN)
    gamma: float = setting(0.2, phases=ALIGN)
    anchoring: Literal["anchored", "non_anchored", "anchored_frozen_id"] = setting("anchored", phases=ALIGN)
    include_padding: bool = setting(False, phases=ALIGN)
    mmd_slots: Literal["all", "unique"] = setting("all", phases=ALIGN)
    mmd_max_slots: int = setting(256, phases=ALIGN)
    alignment_kwargs: dict[str, Any] = setting(default_factory=dict, phases=ALIGN)
    experts: list[str] = setting(default_factory=lambda: list(EXPERTS), phases=FUSE)
    gate: str = setting("bucket_scalar", phases=FUSE)
    gate_init: dict[str, list[float]] = setting(
        default_factory=lambda: {"id": [1.0, 0.0], "align": [-4.0, -5.0], "llm": [0.0, 1.0]}, phases=FUSE
    )
    gate_config: dict[str, Any] = setting(default_factory=dict, phases=FUSE)
    llm_pretrain: bool = setting(True, phases=FUSE)
    llm_logit_adjustment: float = setting(0.5, phases=LLM)
    frozen_in_phase3: list[str] = setting(default_factory=lambda: list(EXPERTS), phases=FUSE)
    logit_adjustment: float = setting(0.0, phases=FUSE)

    def __post_init__(self) -> None:
        check_common_fields(self)
        bad = [e for e in self.experts if e not in EXPERTS]
        if bad or not self.experts or len(set(self.experts)) != len(self.experts):
            raise ValueError(
                f"experts must be a non-empty subset of {list(EXPERTS)} without repeats, got {self.experts}"
            )
        unknown_frozen = [e for e in self.frozen_in_phase3 if e not in EXPERTS]
        if unknown_frozen:
            raise ValueError(f"frozen_in_phase3: unknown expert(s) {unknown_frozen}; expected some of {list(EXPERTS)}")
        # Experts left out of an ablation are simply not frozen (the default names all three).
        self.frozen_in_phase3 = [e for e in self.frozen_in_phase3 if e in self.experts]
        if "llm" in self.frozen_in_phase3 and not self.llm_pretrain:
            raise ValueError(
                "without llm_pretrain the LLM expert is trained from scratch in phase 3 and cannot be "
                "frozen there (remove 'llm' from frozen_in_phase3)"
            )
        allowed = [*ALIGNMENT_LOSSES, "none"]
        if self.alignment not in allowed:
            raise ValueError(f"alignment: expected one of {allowed}, got {self.alignment!r}")
        if self.gate not in GATES:
            raise ValueError(f"gate: expected one of {GATES.names()}, got {self.gate!r}")
        if "init" in self.gate_config:
            raise ValueError("gate_config.init: set the bucket gate's initial logits with gate_init")
        if self.gamma < 0 or self.mmd_max_slots < 0:
            raise ValueError(f"gamma and mmd_max_slots must be >= 0, got {self.gamma} and {self.mmd_max_slots}")
        if self.llm_logit_adjustment < 0:
            raise ValueError(f"llm_logit_adjustment must be >= 0, got {self.llm_logit_adjustment}")
        if self.fusion_init == "auto":
            # resolved here, so run directories record (and phase fingerprints see) what ran
            self.fusion_init = "xavier_normal" if BACKBONES.get(self.backbone).bounded_output else "passthrough"

    def gate_settings(self) -> dict[str, Any]:
        """The gate's config dict: ``gate_config`` plus, for the bucket gate, ``gate_init``."""
        return {**self.gate_config, "init": self.gate_init} if self.gate == "bucket_scalar" else dict(self.gate_config)
