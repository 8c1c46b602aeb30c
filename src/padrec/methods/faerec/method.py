"""FAERec (Fusion and Alignment Enhancement for tail-item sequential recommendation), one phase.

- Items: :class:`~padrec.models.items.faerec.FAERecItems` — history items through the adaptive
  gate over the ID view E and the text view MLP(x) (with the position table P unless the
  backbone is LRURec), candidates = E in training and LayerNorm(E + MLP(x)) at inference.
- Loss: ``L = L_rec + α (w_I(e) L_IA + w_F(e) L_FA)`` with
  ``L_rec`` = BCE with one uniform negative per position scored against E;
  ``L_IA`` = one-direction InfoNCE (τ) between E[i] and MLP(x_i) over the batch's item slots
  (history items and negatives, duplicates kept, other slots of the same item masked);
  ``L_FA`` = Barlow Twins (λ) in the high and low popularity groups of those slots (split at
  their median training popularity), summed;
  ``w_I(e) = w_min + (w_max − w_min)(1 + cos(2πe/T)) / 2``, ``w_F = 1 − w_I``, e = the epoch.
- The losses are returned as ``rec``, ``align_item`` (= α w_I L_IA) and ``align_feature``
  (= α w_F L_FA); the trainer minimises their sum and logs each.

See docs/FAERec.md for the switches and the choices the spec leaves open.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from padrec.losses.barlow import grouped_barlow_twins
from padrec.losses.contrastive import item_info_nce
from padrec.losses.ranking import bce_loss, sample_negatives
from padrec.methods.base import METHODS, Method, MethodContext, Phase
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.methods.faerec.config import FAERecConfig
from padrec.models.backbones.base import build_backbone
from padrec.models.experts import Expert
from padrec.models.items.faerec import FAERecItems, FAERecItemsConfig
from padrec.models.items.precomputed import freeze_item_tables


def curriculum_weights(epoch: float, w_min: float, w_max: float, period: float) -> tuple[float, float]:
    """(w_I, w_F) at epoch e: ``w_I = w_min + (w_max − w_min)(1 + cos(2πe/T)) / 2``, ``w_F = 1 − w_I``."""
    w_item = w_min + (w_max - w_min) * (1 + math.cos(2 * math.pi * epoch / period)) / 2
    return w_item, 1.0 - w_item


@METHODS.register("faerec")
class FAERec(Method):
    """FAERec's gated two-sided items, one backbone and the curriculum of two alignment losses."""

    config_class = FAERecConfig
    requires_text = True

    def __init__(self, config: FAERecConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        if config.feature_alignment and config.popularity_grouping and context.item_stats is None:
            raise ValueError("FAERec's popularity grouping needs item statistics (training frequencies)")
        items_cfg = FAERecItemsConfig(
            mlp_dropout=config.mlp_dropout,
            pca_init=config.pca_init,
            dropout=config.embedding_dropout,
            gate_dropout=config.gate_dropout,
            gating=config.gating,
        )
        max_len = context.max_len if config.fusion_positions == "on" else 0
        items = FAERecItems(context.text_embeddings, config.hidden_size, items_cfg, max_len, config.init_std)
        backbone = build_backbone(config.backbone, config.backbone_config, config.hidden_size, context.max_len)
        self.expert = Expert(items, backbone)
        pop = torch.zeros(context.num_items + 1)
        if context.item_stats is not None:
            pop = torch.as_tensor(context.item_stats.train_frequency, dtype=torch.float32)
        self.register_buffer("popularity", pop, persistent=False)
        # the epoch of the last loss computed (kept with the weights, for report())
        self.register_buffer("curriculum_epoch", torch.zeros((), dtype=torch.long))

    @property
    def items(self) -> FAERecItems:
        """The expert's item representation."""
        return self.expert.items

    def phases(self) -> list[Phase]:
        return [Phase("train", losses=self._losses, score=self._score, trains=["expert"])]

    # --- losses -----------------------------------------------------------------------
    def weights(self, epoch: float) -> tuple[float, float]:
        """(w_I, w_F) of the curriculum at ``epoch`` (0.5, 0.5 without the curriculum)."""
        cfg = self.config
        if not cfg.curriculum:
            return 0.5, 0.5
        return curriculum_weights(epoch, cfg.w_min, cfg.w_max, cfg.period)

    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        epoch = step.epoch if step is not None else 0
        self.curriculum_epoch.fill_(epoch)
        inputs, targets = batch.inputs, batch.targets
        valid = targets > 0
        h = self.expert.encode(inputs)  # B × L × d
        neg = sample_negatives(inputs, targets, self.num_items, cfg.num_negatives)  # B × L × K
        pos_logits = self.expert.logits(h, targets.unsqueeze(-1)).squeeze(-1)  # against E in training
        out = {"rec": bce_loss(pos_logits, self.expert.logits(h, neg), valid)}
        if not (cfg.alpha and (cfg.item_alignment or cfg.feature_alignment)):
            return out
        slots = self.alignment_slots(inputs, neg, valid)  # n
        a = self.items.id_vectors(slots)  # n × d
        b = self.items.llm_vectors(slots)  # n × d
        w_item, w_feature = self.weights(epoch)
        if cfg.item_alignment:
            out["align_item"] = cfg.alpha * w_item * item_info_nce(a, b, slots, cfg.temperature)
        if cfg.feature_alignment:
            pop = self.popularity[slots] if cfg.popularity_grouping else None
            out["align_feature"] = cfg.alpha * w_feature * grouped_barlow_twins(a, b, pop, cfg.bt_lambda, cfg.bt_eps)
        return out

    def alignment_slots(self, inputs: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The batch's item slots: every non-padding history item (B × L inputs) and every
        negative (B × L × K) of a position with a target, duplicates kept -> (n,) ids
        (a random ``align_max_slots`` of them when above that cap)."""
        slots = torch.cat([inputs[inputs > 0], neg[valid].reshape(-1)])
        cap = self.config.align_max_slots
        if cap and slots.numel() > cap:
            slots = slots[torch.randperm(slots.numel(), device=slots.device)[:cap]]
        return slots

    # --- scoring, analyses, serving ---------------------------------------------------
    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.expert.score_all(histories)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id`` (E), ``llm`` (MLP(x)) and ``candidate`` (LayerNorm(E + MLP(x))) tables, (N+1)×d,
        computed in eval mode."""
        items = self.items
        if not isinstance(items, FAERecItems):  # served: frozen tables
            return {"id": items.id_table, "llm": items.llm_table, "candidate": items.table}
        was_training = items.training
        items.eval()
        with torch.no_grad():
            out = {"id": items.ids.all().detach().clone(), "llm": items.llm_all(), "candidate": items.all()}
        items.train(was_training)
        return out

    def report(self) -> dict[str, Any]:
        """The curriculum weights of the last epoch trained (of the kept weights)."""
        epoch = int(self.curriculum_epoch)
        w_item, w_feature = self.weights(epoch)
        return {"curriculum": {"epoch": epoch, "w_item": w_item, "w_feature": w_feature}}

    def for_serving(self, copy_model: bool = True) -> FAERec:
        """Eval mode with the items frozen into candidate, E and MLP(x) tables and the gate
        (:class:`~padrec.models.items.faerec.FrozenFAERecItems`)."""
        import copy

        served = copy.deepcopy(self) if copy_model else self
        served.eval()
        if isinstance(served.expert.items, FAERecItems):
            served.expert.items = served.expert.items.frozen()
        freeze_item_tables(served)
        return served
