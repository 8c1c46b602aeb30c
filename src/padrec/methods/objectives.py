"""What several methods share: an expert's next-item loss, logit adjustment, and the checks of
the config fields every backbone-based method has."""

from __future__ import annotations

from typing import Any

import torch

from padrec.losses.ranking import (
    bce_loss,
    log_popularity_prior,
    sample_negatives,
    sample_shared_negatives,
    sampled_softmax_loss,
    softmax_ce_loss,
)
from padrec.methods.base import MethodContext
from padrec.methods.batches import TrainBatch
from padrec.models.backbones.base import backbone_config
from padrec.models.experts import Expert


def check_logit_adjustment(tau: float) -> None:
    """Logit adjustment needs τ ≥ 0."""
    if tau < 0:
        raise ValueError(f"logit_adjustment must be >= 0, got {tau}")


def popularity_prior(context: MethodContext, tau: float) -> torch.Tensor | None:
    """The (N+1,) log popularity prior a method with logit adjustment τ needs (None when τ = 0)."""
    if not tau:
        return None
    if context.item_stats is None:
        raise ValueError("logit_adjustment needs item statistics (training frequencies)")
    return log_popularity_prior(context.item_stats.train_frequency)


def ranking_losses(
    expert: Expert,
    batch: TrainBatch,
    loss: str,
    num_items: int,
    num_negatives: int = 1,
    log_prior: torch.Tensor | None = None,
    tau: float = 0.0,
    sampled_negatives: int = 1024,
    sampler_log_q: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The next-item loss of one expert on a batch as ``{"rec": loss}``.

    ``loss``: ``ce`` (full softmax over the candidate table), ``bce`` (``num_negatives``
    sampled negatives per position) or ``sampled_ce`` (softmax over the target and
    ``sampled_negatives`` negatives shared by the batch, drawn uniformly or, given
    ``sampler_log_q`` ((N+1,) log Q), from Q with the log Q correction); ``log_prior``
    ((N+1,) log π) and ``tau`` add logit adjustment (τ·log π_i on every logit in training only).
    """
    h = expert.encode(batch.inputs)  # B × L × d
    if loss == "ce":
        return {"rec": softmax_ce_loss(h, expert.items.all(), batch.targets, log_prior, tau)}
    if loss == "sampled_ce":
        mask = batch.targets > 0
        targets = batch.targets[mask]
        negatives = sample_shared_negatives(num_items, sampled_negatives, sampler_log_q, h.device)
        vectors = expert.items.candidates(torch.cat([targets, negatives]))
        seq = h[mask]
        return {
            "rec": sampled_softmax_loss(
                seq, vectors[: len(targets)], vectors[len(targets) :], targets, negatives, sampler_log_q, log_prior, tau
            )
        }
    neg = sample_negatives(batch.inputs, batch.targets, num_items, num_negatives)
    pos = expert.logits(h, batch.targets.unsqueeze(-1)).squeeze(-1)
    neg_logits = expert.logits(h, neg)
    if tau:  # the same offset on the binary logits (Menon et al.'s adjusted loss for any margin loss)
        pos = pos + tau * log_prior[batch.targets]
        neg_logits = neg_logits + tau * log_prior[neg]
    return {"rec": bce_loss(pos, neg_logits, batch.targets > 0)}


# Bounds that keep one setting from asking for more memory than any machine has (the item
# table is (N+1) × d; sampled logits are B × L × negatives × d).
MAX_HIDDEN_SIZE = 16384
MAX_NEGATIVES = 4096
MAX_SHARED_NEGATIVES = 1 << 20


def check_common_fields(cfg: Any) -> None:
    """Checks shared by configs with ``backbone``, ``backbone_config``, ``hidden_size``,
    ``num_negatives``, ``init_std`` and ``logit_adjustment`` fields."""
    if not 1 <= cfg.hidden_size <= MAX_HIDDEN_SIZE:
        raise ValueError(f"hidden_size must be between 1 and {MAX_HIDDEN_SIZE}, got {cfg.hidden_size}")
    if not 1 <= cfg.num_negatives <= MAX_NEGATIVES:
        raise ValueError(f"num_negatives must be between 1 and {MAX_NEGATIVES}, got {cfg.num_negatives}")
    if cfg.init_std <= 0:
        raise ValueError(f"init_std must be > 0, got {cfg.init_std}")
    check_logit_adjustment(cfg.logit_adjustment)
    backbone_config(cfg.backbone, cfg.backbone_config, cfg.hidden_size)
