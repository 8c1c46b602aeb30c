"""LOAM's configuration: every constant of Niche Walk Augmentation and Tail Session Mixup with
the default of the official release (Yang et al., SIGIR 2023; ``config.py`` / ``utils.py`` /
``model.py`` of the authors' code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from padrec.models.backbones.base import backbone_config


@dataclass
class LOAMConfig:
    """LOAM on any registered backbone (ID items only).

    Attributes:
        backbone: registered backbone name (LOAM is model-agnostic; the release wraps SR-GNN,
            NISER+ and CORE; padrec: any backbone, default SASRec).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` are filled in).
        hidden_size: d (release ``--hidden_size 100``; padrec's shipped configs use 64).
        init_std: std of the normal initialisation of the ID table (padrec's ID default; the
            release draws U(−1/√d, 1/√d)).
        nwa: Niche Walk Augmentation on (False = the "w/o NWA" ablation).
        aug_ratio: walks (and walk start items) per original row of a batch (release
            ``--aug_ratio 0.1``).
        walk_alpha: α, probability of stepping to a uniformly random predecessor; otherwise
            the least popular one (release ``--random_walk_alpha 0.5``).
        walk_len: the most steps of a walk, i.e. items of a walk session (release ``NWA``
            default ``walk_len=10``).
        walks_per_start: walks from each start item (release ``NWA`` default ``n_walks=5``).
        head_edge_cap: incoming edges kept per head item; 0 = the mean number of
            predecessors of an item (release ``--edge_drop_type all_mean``, which hard-codes
            the per-dataset means 8-34).
        head_fraction: share of the most popular items (training frequency) counted as head
            for the edge cap and for TSM's tail sessions (padrec's head/tail rule: 20%; the
            release reads a precomputed ``ht_dict``).
        graph_seed: seed of the one-off choice of the kept head edges (release seed 220).
        tsm: Tail Session Mixup on (False = the "w/o TSM" ablation).
        mixup_lambda: λ, the tail session's share of the interpolation (release
            ``--mixup_lam 0.8``).
        mixup_similarity: how a tail session's partner is chosen: ``cosine`` (most similar
            representation; release ``--sim_type cosine``) or ``random``.
        mixup_other_sequences: partners come from other rows only. padrec trains every prefix
            of a window at once, so without this a prefix's most similar session is nearly
            always the adjacent prefix of the same sequence; the release's batches hold
            sessions of different users.
        tsm_weight: weight of the TSM loss (release: ``loss = h_loss + t_loss``, 1).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    hidden_size: int = 64
    init_std: float = 0.02
    nwa: bool = True
    aug_ratio: float = 0.1
    walk_alpha: float = 0.5
    walk_len: int = 10
    walks_per_start: int = 5
    head_edge_cap: int = 0
    head_fraction: float = 0.2
    graph_seed: int = 220
    tsm: bool = True
    mixup_lambda: float = 0.8
    mixup_similarity: Literal["cosine", "random"] = "cosine"
    mixup_other_sequences: bool = True
    tsm_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.hidden_size <= 16384:
            raise ValueError(f"hidden_size must be between 1 and 16384, got {self.hidden_size}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        if not 0.0 <= self.aug_ratio <= 10.0:
            raise ValueError(f"aug_ratio must be in [0, 10], got {self.aug_ratio}")
        if not 0.0 <= self.walk_alpha <= 1.0:
            raise ValueError(f"walk_alpha must be in [0, 1], got {self.walk_alpha}")
        if self.walk_len < 2 or self.walks_per_start < 1 or self.head_edge_cap < 0:
            raise ValueError("need walk_len >= 2, walks_per_start >= 1 and head_edge_cap >= 0")
        if not 0.0 < self.head_fraction < 1.0:
            raise ValueError(f"head_fraction must be in (0, 1), got {self.head_fraction}")
        if not 0.0 <= self.mixup_lambda <= 1.0:
            raise ValueError(f"mixup_lambda must be in [0, 1], got {self.mixup_lambda}")
        if self.tsm_weight < 0:
            raise ValueError(f"tsm_weight must be >= 0, got {self.tsm_weight}")
        backbone_config(self.backbone, self.backbone_config, self.hidden_size)
