"""Losses as plain functions of tensors: ranking (BCE with negatives, softmax CE) and alignment."""

from padrec.losses.ranking import (
    adjusted_cross_entropy,
    bce_loss,
    log_popularity_prior,
    sample_negatives,
    softmax_ce_loss,
)

__all__ = ["adjusted_cross_entropy", "bce_loss", "log_popularity_prior", "sample_negatives", "softmax_ce_loss"]
