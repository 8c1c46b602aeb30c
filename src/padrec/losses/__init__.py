"""Losses as plain functions of tensors: ranking (BCE with negatives, full and sampled softmax CE) and alignment."""

from padrec.losses.barlow import barlow_twins, grouped_barlow_twins, median_split
from padrec.losses.contrastive import item_info_nce
from padrec.losses.ranking import (
    adjusted_cross_entropy,
    bce_loss,
    log_popularity_prior,
    sample_negatives,
    sample_shared_negatives,
    sampled_softmax_loss,
    softmax_ce_loss,
)

__all__ = [
    "adjusted_cross_entropy",
    "barlow_twins",
    "bce_loss",
    "grouped_barlow_twins",
    "item_info_nce",
    "log_popularity_prior",
    "median_split",
    "sample_negatives",
    "sample_shared_negatives",
    "sampled_softmax_loss",
    "softmax_ce_loss",
]
