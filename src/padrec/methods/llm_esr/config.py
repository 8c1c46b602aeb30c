"""LLM-ESR's configuration: every constant of dual-view modelling and retrieval-augmented
self-distillation, with the default of the paper's release (liuqidong07/LLM-ESR: ``main.py``
and ``experiments/*.bash``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from padrec.config import setting
from padrec.models.backbones.base import BACKBONES, backbone_config

# The backbone fields that embed_before_cross sets: the views arrive scaled, positioned and
# dropped out, so the backbone must not do it again.
EMBEDDED_INPUT_FIELDS = {
    "position_embedding": False,
    "scale_input": False,
    "input_layer_norm": False,
    "input_dropout": 0.0,
}


@dataclass
class LLMESRConfig:
    """LLM-ESR on any registered backbone.

    Attributes:
        backbone: registered backbone shared by both views (release: SASRec, GRU4Rec,
            Bert4Rec; padrec: any).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` are filled in).
        hidden_size: d, the width of each view; user and item vectors are 2d (release
            ``--hidden_size 64``).
        init_std: std of normal initialisations (E without ``pca_init``; PCA's missing columns).
        pca_init: initialise the collaborative table E with PCA(n_components=d) of the item
            text embeddings (release ``pca64_itm_emb_np.pkl``).
        cross_attention: the cross-view attention between the two views before the backbone
            (release ``--use_cross_att``, on in every script of ``experiments/``).
        cross_heads: its heads (release ``Multi_CrossAttention(d, d, 2)``).
        cross_mask: which keys a position of the cross-view attention sees: ``causal`` (the
            real positions up to itself; padrec's default, so every position of a window trains
            without seeing its target) or ``padding`` (every real position of the window, the
            release's mask). ``padding`` makes the method non-causal: it then trains on prefix
            examples unless ``split.train_examples: shifted`` with ``split.allow_look_ahead: true``
            reproduces the release, whose training positions see the items they predict.
        embed_before_cross: scale each view by √d, add one learned position table shared by the
            two views and apply dropout (``embed_dropout``) before the cross-view attention, as
            the release's ``DualLLMSASRec.log2feats`` does; the backbone is then built without
            its own positions, scaling, input LayerNorm and input dropout (a backbone with a
            position table only: SASRec). False (padrec's default) leaves all of that to the
            backbone, after the cross-view attention, whose attention then has no positions.
        embed_dropout: that dropout (release ``--dropout_rate``); None = the backbone's ``dropout``.
        loss: ``bce`` (one sampled negative per position, the release's ``BCEWithLogitsLoss``)
            or ``ce`` (full softmax).
        num_negatives: negatives per position for ``bce`` (release ``--train_neg 1``).
        distill: retrieval-augmented self-distillation on (False = "w/o SD" ablation).
        alpha: α, weight of the self-distillation loss (release ``--alpha 0.1``).
        sim_users: K, similar users per user (release ``--sim_user_num 10``).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    hidden_size: int = 64
    init_std: float = 0.02
    pca_init: bool = True
    cross_attention: bool = True
    cross_heads: int = 2
    cross_mask: Literal["causal", "padding"] = setting("causal", legacy="causal")
    embed_before_cross: bool = setting(False, legacy=False)
    embed_dropout: float | None = setting(None, legacy=None)
    loss: Literal["bce", "ce"] = "bce"
    num_negatives: int = 1
    distill: bool = True
    alpha: float = 0.1
    sim_users: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.hidden_size <= 16384:
            raise ValueError(f"hidden_size must be between 1 and 16384, got {self.hidden_size}")
        if not 1 <= self.num_negatives <= 4096:
            raise ValueError(f"num_negatives must be between 1 and 4096, got {self.num_negatives}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        if self.cross_heads < 1 or self.hidden_size % self.cross_heads != 0:
            raise ValueError(
                f"cross_heads ({self.cross_heads}) must be >= 1 and divide hidden_size ({self.hidden_size})"
            )
        if self.cross_mask not in ("causal", "padding"):
            raise ValueError(f"cross_mask must be 'causal' or 'padding', got {self.cross_mask!r}")
        if self.embed_dropout is not None and not 0.0 <= self.embed_dropout < 1.0:
            raise ValueError(f"embed_dropout must be in [0, 1), got {self.embed_dropout}")
        if self.embed_before_cross and not BACKBONES.get(self.backbone).adds_positions:
            raise ValueError(
                f"embed_before_cross needs a backbone with its own position table (sasrec); "
                f"{self.backbone!r} has none to replace"
            )
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 1 <= self.sim_users <= 1000:
            raise ValueError(f"sim_users must be between 1 and 1000, got {self.sim_users}")
        backbone_config(self.backbone, self.built_backbone_config(), self.hidden_size)

    def built_backbone_config(self) -> dict[str, Any]:
        """``backbone_config`` with :data:`EMBEDDED_INPUT_FIELDS` when ``embed_before_cross``."""
        return {**self.backbone_config, **EMBEDDED_INPUT_FIELDS} if self.embed_before_cross else self.backbone_config
