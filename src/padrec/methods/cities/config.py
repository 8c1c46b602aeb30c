"""CITIES' configuration: the backbone of phase ``pretrain`` and every constant of the
embedding-inference function of phase ``infer``, with their sources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from padrec.config import setting
from padrec.methods._longtail_common import check_backbone_fields

INFER = ("infer",)


@dataclass
class CITIESConfig:
    """CITIES (Jang et al., ICDM 2020; official code github.com/swonj90/CITIES).

    Attributes:
        backbone: registered backbone of the pre-trained model (the paper: BERT4Rec, GRU4Rec;
            any padrec backbone).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` filled in).
        hidden_size: d (padrec's default; the paper inherits the backbone's).
        loss: the backbone's training loss in ``pretrain`` (padrec's ``ce`` or ``bce``; CITIES
            does not change how the backbone is trained).
        num_negatives: negatives per position for ``bce``.
        init_std: std of the ID table's (and the mask token's) normal initialisation.
        head_fraction: the share of items counted as head, by training frequency (paper:
            Pareto principle, top 20% head, the other 80% tail).
        tail_max_frequency: > 0 replaces ``head_fraction`` by the official code's rule: items
            with at most this many training interactions are tail (``FREQ_LBOUND = 5``).
        context_size: c, items on each side of the masked item in a context (code ``MAX_LEN = 24``).
        max_shots: K, the number of contexts per head item in a training batch, is drawn
            uniformly from 1..max_shots per batch (few-shot training; code ``MAX_N_SHOT = 10``).
        num_heads: attention heads of the interpreter and aggregator (code ``N_HEAD = 4``).
        num_layers: blocks of each (code ``N_LAYER = 2``).
        attention_dropout: on attention probabilities (code 0.5).
        ffn_dropout: inside the FFN (code 0.2).
        residual_dropout: on each block's sub-layer outputs (code 0.2).
        position_dropout: after the position encoding (code 0.2).
        lr: learning rate of phase ``infer`` (code ``LR = 1e-4``; a phase override, so the
            run's ``phase_train.infer.lr`` wins).
        warmup_steps: linear warm-up steps of phase ``infer`` (code ``WARMUP_PERIOD = 100``).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = setting(default_factory=dict)
    hidden_size: int = 64
    loss: Literal["ce", "bce"] = "ce"
    num_negatives: int = 1
    init_std: float = 0.02
    head_fraction: float = setting(0.2, phases=INFER)
    tail_max_frequency: int = setting(0, phases=INFER)
    context_size: int = setting(24, phases=INFER)
    max_shots: int = setting(10, phases=INFER)
    num_heads: int = setting(4, phases=INFER)
    num_layers: int = setting(2, phases=INFER)
    attention_dropout: float = setting(0.5, phases=INFER)
    ffn_dropout: float = setting(0.2, phases=INFER)
    residual_dropout: float = setting(0.2, phases=INFER)
    position_dropout: float = setting(0.2, phases=INFER)
    lr: float = setting(1e-4, phases=INFER)
    warmup_steps: int = setting(100, phases=INFER)

    def __post_init__(self) -> None:
        check_backbone_fields(self)
        if not 0.0 < self.head_fraction < 1.0:
            raise ValueError(f"head_fraction must be strictly between 0 and 1, got {self.head_fraction}")
        if self.tail_max_frequency < 0:
            raise ValueError(f"tail_max_frequency must be >= 0, got {self.tail_max_frequency}")
        for name in ("context_size", "max_shots", "num_heads", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        for name in ("attention_dropout", "ffn_dropout", "residual_dropout", "position_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("lr must be > 0 and warmup_steps >= 0")
