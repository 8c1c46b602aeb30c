"""LOAM (Yang et al., SIGIR 2023): Niche Walk Augmentation and Tail Session Mixup on an ID model.

- Model: an ID table E feeding one registered backbone; scores are ``h · E_iᵀ`` (an
  :class:`~padrec.models.experts.Expert`).
- Batches: the split's training windows plus niche-walk sessions built from the transition
  graph of those windows (:mod:`padrec.methods.loam.walks`; never from validation or test).
- Loss: ``L = L_rec + w · L_TSM``; ``L_rec`` = full-softmax cross-entropy at every target of
  every row, walk rows included (the release's ``CrossEntropyLoss`` over all items);
  ``L_TSM`` = :func:`~padrec.losses.loam.tail_session_mixup_loss` on the original rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from padrec.data.protocols import Split
from padrec.losses.loam import tail_session_mixup_loss
from padrec.losses.ranking import softmax_ce_loss
from padrec.methods.base import METHODS, Method, MethodContext, Phase
from padrec.methods.batches import BatchSettings, StepInfo, TrainBatch
from padrec.methods.loam.config import LOAMConfig
from padrec.methods.loam.walks import NicheWalkBatches, TransitionGraph, build_transition_graph
from padrec.models.backbones.base import build_backbone
from padrec.models.experts import Expert
from padrec.models.items.id import IDEmbedding


def head_items(frequency: np.ndarray, fraction: float) -> np.ndarray:
    """(N+1,) bool: the ``floor(fraction · M)`` most frequent of the M items that occur
    (ties by id), padrec's head rule (``compute_item_stats``), on training frequencies."""
    freq = np.asarray(frequency)
    order = np.argsort(-freq[1:], kind="stable")
    head = np.zeros(len(freq), dtype=bool)
    head[order[: int(fraction * int((freq[1:] > 0).sum()))] + 1] = True
    return head


@METHODS.register("loam")
class LOAM(Method):
    """An ID model trained with niche-walk sessions and tail session mixup (module docstring)."""

    config_class = LOAMConfig
    is_tail: torch.Tensor

    def __init__(self, config: LOAMConfig, context: MethodContext) -> None:
        if context.item_stats is None:
            raise ValueError("LOAM needs item statistics (training frequencies) for its head/tail split")
        super().__init__(config, context)
        items = IDEmbedding(context.num_items, config.hidden_size, init_std=config.init_std)
        backbone = build_backbone(config.backbone, config.backbone_config, config.hidden_size, context.max_len)
        self.expert = Expert(items, backbone)
        self.popularity = np.asarray(context.item_stats.train_frequency, dtype=np.int64)
        self.is_head = head_items(self.popularity, config.head_fraction)
        tail = torch.from_numpy(~self.is_head)
        tail[0] = False
        self.register_buffer("is_tail", tail, persistent=False)
        self.graph: TransitionGraph | None = None

    def phases(self) -> list[Phase]:
        batches = self._batches if self.config.nwa else None
        return [Phase("train", losses=self._losses, score=self._score, trains=["expert"], batches=batches)]

    # --- batches and losses -----------------------------------------------------------
    def transition_graph(self, split: Split) -> TransitionGraph:
        """The NWA graph of ``split``'s training windows (built once per split)."""
        if self.graph is None or getattr(self, "_graph_key", None) != id(split):
            cfg = self.config
            self.graph = build_transition_graph(
                split.train_inputs,
                split.train_targets,
                self.popularity,
                self.is_head,
                cfg.head_edge_cap,
                cfg.graph_seed,
            )
            self._graph_key = id(split)
        return self.graph

    def _batches(self, split: Split, settings: BatchSettings) -> NicheWalkBatches:
        cfg = self.config
        graph = self.transition_graph(split)
        return NicheWalkBatches(
            split, settings, graph, cfg.aug_ratio, cfg.walk_len, cfg.walks_per_start, cfg.walk_alpha
        )

    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        h = self.expert.encode(batch.inputs)  # B' × L × d (walk rows last)
        table = self.expert.items.all()
        out = {"rec": softmax_ce_loss(h, table, batch.targets)}
        if cfg.tsm and cfg.tsm_weight:
            n = batch.inputs.shape[0] - int(getattr(batch, "walks", 0))
            tsm = tail_session_mixup_loss(
                h[:n],
                batch.targets[:n],
                self.is_tail,
                table,
                cfg.mixup_lambda,
                cfg.mixup_similarity,
                cfg.mixup_other_sequences,
            )
            out["tsm"] = cfg.tsm_weight * tsm
        return out

    # --- scoring and reporting --------------------------------------------------------
    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.expert.score_all(histories)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        return {"id": self.expert.items.all().detach()}

    def report(self) -> dict[str, Any]:
        """The NWA graph's size (when it was built in this process)."""
        if self.graph is None:
            return {}
        return {"nwa_graph": {"edges": self.graph.num_edges, "head_edge_cap": self.graph.cap}}
