"""Losses as plain functions of tensors: ranking (BCE with negatives, softmax CE) and alignment."""

from padrec.losses.ranking import bce_loss, sample_negatives, softmax_ce_loss

__all__ = ["bce_loss", "sample_negatives", "softmax_ce_loss"]
