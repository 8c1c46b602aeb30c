"""DisCo's configuration: the official code's constants and padrec's shared protocol settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from padrec.methods.objectives import MAX_HIDDEN_SIZE, MAX_NEGATIVES
from padrec.models.backbones.base import backbone_config


@dataclass
class DisCoConfig:
    """DisCo (Du et al., KDD 2024) on a sequential backbone (see the package docstring).

    Attributes:
        backbone: registered backbone encoding the ID (tabular) history (PAD: SASRec).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` are filled in).
        hidden_size: d, the ID embedding and pattern-vector width (the official
            ``embedding_size``, 32 there; padrec's protocol: 64). Must be even: the ID vectors
            are split in two chunks of d/2 (official ``torch.chunk(·, 2, -1)``).
        init_std: std of the normal ID-table initialisation (padrec's default 0.02).
        loss: ranking loss ``ce`` (full softmax, padrec's default) or ``bce`` (sampled
            negatives: PAD's protocol and DisCo's CTR loss).
        num_negatives: sampled negatives per position, for ``bce`` and for the sufficiency critic
            (1: PAD's protocol).
        text_input_norm: rescaling of the frozen text before it is chunked (padrec's
            ``standardize``; the official code feeds the raw LLM embedding, ``none``).
        alpha: weight of the disentanglement (CLUB) term (official ``--alpha 0.2``).
        beta: weight of the sufficiency (InfoMax) term (official ``--beta 0.2``).
        club_hidden: hidden width of CLUB's q networks (official ``CLUB(d, d, d)``: None = d).
        disentanglement: the CLUB term and the fitting of q; False = ablation without it.
        sufficiency: the InfoMax term; False = ablation without it.
        max_slots: random subsample of the batch's positions for the two regularisers above
            this many (0 = every position with a target, padrec's default).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    hidden_size: int = 64
    init_std: float = 0.02
    loss: Literal["ce", "bce"] = "ce"
    num_negatives: int = 1
    text_input_norm: Literal["none", "center", "standardize"] = "standardize"
    alpha: float = 0.2
    beta: float = 0.2
    club_hidden: int | None = None
    disentanglement: bool = True
    sufficiency: bool = True
    max_slots: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.hidden_size <= MAX_HIDDEN_SIZE or self.hidden_size % 2:
            raise ValueError(f"hidden_size must be even and in [2, {MAX_HIDDEN_SIZE}], got {self.hidden_size}")
        if not 1 <= self.num_negatives <= MAX_NEGATIVES:
            raise ValueError(f"num_negatives must be between 1 and {MAX_NEGATIVES}, got {self.num_negatives}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        if self.alpha < 0 or self.beta < 0 or self.max_slots < 0:
            raise ValueError("alpha, beta and max_slots must be >= 0")
        if self.club_hidden is None:
            self.club_hidden = self.hidden_size
        if self.club_hidden < 1:
            raise ValueError(f"club_hidden must be >= 1, got {self.club_hidden}")
        backbone_config(self.backbone, self.backbone_config, self.hidden_size)
