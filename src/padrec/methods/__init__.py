"""Registered methods. Importing this package registers the built-in ones."""

from padrec.methods import faerec, pad, sequential  # noqa: F401  (registration)
from padrec.methods.base import METHODS, Method, MethodContext, Phase, saved_phase
from padrec.methods.batches import BatchBuilder, BatchSettings, StepInfo, TrainBatch, WindowBatches

__all__ = [
    "METHODS",
    "BatchBuilder",
    "BatchSettings",
    "Method",
    "MethodContext",
    "Phase",
    "StepInfo",
    "TrainBatch",
    "WindowBatches",
    "saved_phase",
]
