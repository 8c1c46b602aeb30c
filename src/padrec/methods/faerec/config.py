"""FAERec's configuration: every constant of the spec's "Model" section, with its default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from padrec.config import setting
from padrec.models.backbones.base import backbone_config

# Backbones the spec trains without the fusion's position table ("no P for LRURec").
NO_FUSION_POSITIONS = ("lrurec",)


@dataclass
class FAERecConfig:
    """FAERec's switches (defaults: the spec; per-dataset presets in ``configs/faerec_*.yaml``).

    Attributes:
        backbone: registered backbone name (spec: SASRec, FMLP-Rec, LRURec, NARM, LightSANs, gMLP).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` are filled in).
        hidden_size: d (spec 128).
        init_std: std of normal initialisations (P; E when ``pca_init`` is off).
        mlp_dropout: dropout inside the projection MLP D → D/2 → d (spec 0.3).
        pca_init: initialise E with PCA(n_components=d) of the text rows 1..N (spec: yes).
        fusion_positions: the position table P_t added to u_t and v_t: ``auto`` = P for every
            backbone but LRURec (spec); ``on`` / ``off`` force it. Backbones that add their own
            positions (SASRec, FMLP-Rec, LightSANs, gMLP) still add them inside the backbone.
        embedding_dropout: dropout of u_t and v_t (the spec names no rate); None = the
            backbone's ``dropout``, resolved at load time.
        gate_dropout: dropout inside the gate MLP (spec 0.1).
        num_negatives: uniform negatives per position of the BCE loss (spec 1).
        alpha: α, weight of the alignment loss (spec 0.2).
        temperature: τ of the item-level InfoNCE (spec 0.05).
        bt_lambda: λ, off-diagonal weight of Barlow Twins (spec 0.005).
        bt_eps: added to the std when standardising (spec 1e-5).
        w_max: curriculum maximum of w_I (spec 1).
        w_min: curriculum minimum of w_I (spec: Beauty 0.9, Grocery 0.7, Yelp 0.3).
        period: T, the curriculum period in epochs (spec: Beauty 30, Grocery 20, Yelp 25).
        gating: adaptive gating fusion; False = ablation "w/o gating fusion" (g = 1/2:
            history = LayerNorm((u + v) / 2)).
        item_alignment: the InfoNCE term; False = ablation "w/o item-level alignment".
        feature_alignment: the Barlow Twins term; False = ablation "w/o feature-level alignment".
        curriculum: the cosine schedule; False = ablation "w/o curriculum" (w_I = w_F = 0.5).
        popularity_grouping: Barlow Twins per popularity group; False = ablation "w/o
            popularity grouping" (one group of all slots).
        align_max_slots: random subsample of item slots for the alignment losses above this
            many (0 = every slot, the spec; the InfoNCE matrix is slots²).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = setting(default_factory=dict)
    hidden_size: int = 128
    init_std: float = 0.02
    mlp_dropout: float = 0.3
    pca_init: bool = True
    fusion_positions: Literal["auto", "on", "off"] = "auto"
    embedding_dropout: float | None = None
    gate_dropout: float = 0.1
    num_negatives: int = 1
    alpha: float = 0.2
    temperature: float = 0.05
    bt_lambda: float = 0.005
    bt_eps: float = 1e-5
    w_max: float = 1.0
    w_min: float = 0.9
    period: float = 30.0
    gating: bool = True
    item_alignment: bool = True
    feature_alignment: bool = True
    curriculum: bool = True
    popularity_grouping: bool = True
    align_max_slots: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.hidden_size <= 16384:
            raise ValueError(f"hidden_size must be between 1 and 16384, got {self.hidden_size}")
        if not 1 <= self.num_negatives <= 4096:
            raise ValueError(f"num_negatives must be between 1 and 4096, got {self.num_negatives}")
        if self.init_std <= 0 or self.temperature <= 0 or self.period <= 0 or self.bt_eps <= 0:
            raise ValueError("init_std, temperature, period and bt_eps must be > 0")
        if self.alpha < 0 or self.bt_lambda < 0 or self.align_max_slots < 0:
            raise ValueError("alpha, bt_lambda and align_max_slots must be >= 0")
        if not 0.0 <= self.w_min <= self.w_max <= 1.0:
            raise ValueError(f"need 0 <= w_min <= w_max <= 1, got w_min={self.w_min}, w_max={self.w_max}")
        bb = backbone_config(self.backbone, self.backbone_config, self.hidden_size)
        if self.embedding_dropout is None:
            self.embedding_dropout = float(bb.dropout)
        for name in ("mlp_dropout", "embedding_dropout", "gate_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.fusion_positions == "auto":
            self.fusion_positions = "off" if self.backbone in NO_FUSION_POSITIONS else "on"
