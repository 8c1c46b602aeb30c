"""SMEM: Shared and Modality-specific EMbeddings, the baseline PAD proposes (PAD §4.1.3, §4.4).

SMEM carries STEM (Su et al., AAAI 2024: one embedding table per task plus a shared one, each
feeding its own expert, the experts' outputs gated) from tasks over to modalities: the ID and
the text modality each have a specific embedding feeding a specific expert, and a shared expert
reads a second copy of both, concatenated. PAD §4.4 defines it as its own pipeline with "No
Alignment, i.e., SMEM, which doesn't involve any alignment loss but simply concat the textual
and collaborative embeddings within the alignment expert". So this is PAD with the shared
expert trained on L_REC alone, every other setting PAD's:

1. ``pretrain`` — the ID-specific expert (ID table + backbone) on next-item prediction;
   ``pretrain_llm`` (``llm_pretrain``) — the text-specific expert (frozen text → MLP → backbone).
2. ``align`` (PAD's phase name, kept so PAD's code runs unchanged) — the shared expert: its own
   ID table and backbone copied from phase 1 and its own text MLP, item vectors
   ``act(Linear(Dropout([id ; MLP(text)])))``; loss L_REC only.
3. ``disentangle`` — the three experts fused per candidate item by PAD's gate.

STEM's stop-gradient between tasks has no counterpart: there is one task (next-item prediction).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from padrec.config import setting
from padrec.methods.base import METHODS
from padrec.methods.pad.config import ALIGN, EXPERTS, FUSE, LLM, TEXT, PADConfig
from padrec.methods.pad.method import PAD


@dataclass
class SMEMConfig:
    """SMEM's switches: PAD's, less its alignment loss (defaults: padrec's PAD defaults,
    ``configs/pad.yaml``; docs/PAD.md says where each differs from PAD's release).

    Attributes:
        backbone, backbone_config, hidden_size, init_std: as for ``pad``; every expert uses its
            own copy of the backbone.
        loss: ranking loss of every phase, ``ce`` (padrec) or ``bce`` (PAD's paper).
        num_negatives: negatives per position for ``bce`` (PAD: 1).
        text_mlp_layers, text_dropout, text_final_activation, text_input_norm: the text MLPs
            of the shared and text-specific experts (padrec's PAD defaults; release: 4 hidden
            layers, dropout 0.1, final GELU, no normalisation).
        fusion_dropout, fusion_init, fusion_activation: the shared expert's concat fusion
            (PAD: dropout 0.1, GELU; ``auto`` init as PAD's).
        experts: which experts phase 3 fuses (``id``, ``align`` = shared, ``llm``).
        gate, gate_init, gate_config: PAD's frequency-aware gate (release: ``bucket_scalar``).
        llm_pretrain, llm_logit_adjustment: train the text-specific expert alone first, with
            logit adjustment τ (padrec's PAD defaults: yes, 0.5).
        frozen_in_phase3: experts kept fixed in phase 3 (padrec's PAD default: all three).
        logit_adjustment: τ of phase 3 (PAD: 0).
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
    fusion_init: Literal["auto", "xavier_normal", "passthrough"] = setting("auto", phases=ALIGN)
    fusion_activation: Literal["gelu", "relu", "tanh", "identity"] = setting("gelu", phases=ALIGN)
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
        # PAD's checks and resolutions, on PAD's config with its alignment loss switched off
        pad = PADConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, alignment="none")
        self.fusion_init = pad.fusion_init
        self.frozen_in_phase3 = pad.frozen_in_phase3

    # What PAD's code reads of the alignment loss: none, so phase ``align`` trains on L_REC only.
    @property
    def alignment(self) -> str:
        """No alignment loss."""
        return "none"

    @property
    def gamma(self) -> float:
        """Weight of the (absent) alignment loss."""
        return 0.0

    @property
    def anchoring(self) -> str:
        """The shared expert trains on L_REC (PAD's ``anchored`` without an alignment term)."""
        return "anchored"

    def gate_settings(self) -> dict[str, Any]:
        """The gate's config dict: ``gate_config`` plus, for the bucket gate, ``gate_init``."""
        return {**self.gate_config, "init": self.gate_init} if self.gate == "bucket_scalar" else dict(self.gate_config)


@METHODS.register("smem")
class SMEM(PAD):
    """PAD's three experts and phases without the alignment loss (module docstring)."""

    config_class = SMEMConfig
