"""MELT's configuration: the backbone (phase ``pretrain``) and every constant of the two
branches (phase ``melt``), with their sources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from padrec.config import setting
from padrec.methods._longtail_common import check_backbone_fields

MELT = ("melt",)


@dataclass
class MELTConfig:
    """MELT (Kim et al., SIGIR 2023; official code github.com/rlqja1107/MELT).

    Attributes:
        backbone: registered backbone (the paper: SASRec, FMLP-Rec; any padrec backbone).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` filled in).
        hidden_size: d (padrec's default; the code's ``hidden_units`` is 50).
        loss: next-item loss L_rec in both phases: ``bce`` with sampled negatives (the
            code's SASRec: one uniform negative per position) or ``ce``.
        num_negatives: negatives per position for ``bce`` (code 1).
        init_std: std of the ID table's normal initialisation (the code uses Xavier-normal).
        head_user_fraction: head users are those whose training sequence is longer than
            T_u = the (1 − fraction) quantile of the training lengths (paper: Pareto, top 20%
            of users head; code ``pareto_rule = 0.8``).
        head_item_fraction: head items are those with more than T_i training interactions,
            T_i = the (1 − fraction) quantile of the frequencies of the items that occur
            (paper: top 20%; the code takes the ``pareto_rule − 0.02`` quantile).
        lamb_u: λ_U, weight of the user-branch loss L_u (code default 0.2; README per
            dataset, e.g. 0.1 on Grocery and Beauty).
        lamb_i: λ_I, weight of the item-branch loss L_i (code default 0.3; Beauty 0.4).
        e_max: epochs of phase ``melt`` (a phase override; code default 41, README 180 on
            Grocery/Beauty); the curriculum's e/e_max uses the phase's epochs in force.
        item_span: s of the item weight (code: ``i_L_max = T_i + 50`` and π/100 = π/(2·50)).
        residual_user_loss: L_u fits the transferred representation ``z + W_U z`` of a head
            user's recent subsequence to the representation of the whole sequence, the
            transfer MELT applies to tail users at inference and to item contexts (True);
            False fits ``W_U z`` as the official code's loss does.
        refresh_user_transfer: the epoch-start update of the tail-item embeddings averages
            ``z + W_U z`` over the item's contexts, as the item branch is trained (True);
            False averages ``z``, as the official code's ``update_tail_item_representation``.
        user_weight: ``curriculum`` = w_u (paper); ``constant`` = 1 (ablation "w/o CL").
        item_weight: ``curriculum`` = w_i (paper); ``constant`` = 1 (ablation "w/o CL").
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = setting(default_factory=dict)
    hidden_size: int = 64
    loss: Literal["ce", "bce"] = "bce"
    num_negatives: int = 1
    init_std: float = 0.02
    head_user_fraction: float = setting(0.2, phases=MELT)
    head_item_fraction: float = setting(0.2, phases=MELT)
    lamb_u: float = setting(0.2, phases=MELT)
    lamb_i: float = setting(0.3, phases=MELT)
    e_max: int = setting(180, phases=MELT)
    item_span: int = setting(50, phases=MELT)
    residual_user_loss: bool = setting(True, phases=MELT)
    refresh_user_transfer: bool = setting(True, phases=MELT)
    user_weight: Literal["curriculum", "constant"] = setting("curriculum", phases=MELT)
    item_weight: Literal["curriculum", "constant"] = setting("curriculum", phases=MELT)

    def __post_init__(self) -> None:
        check_backbone_fields(self)
        for name in ("head_user_fraction", "head_item_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be strictly between 0 and 1, got {getattr(self, name)}")
        if self.lamb_u < 0 or self.lamb_i < 0:
            raise ValueError("lamb_u and lamb_i must be >= 0")
        if self.e_max < 1 or self.item_span < 1:
            raise ValueError("e_max and item_span must be >= 1")
