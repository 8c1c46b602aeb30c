"""Registered methods. Importing this package registers every method module or subpackage in
it: adding a method is adding one file (or package) with ``@METHODS.register("name")``."""

import importlib
import pkgutil

from padrec.methods.base import METHODS, Domain, Method, MethodContext, Phase, saved_phase
from padrec.methods.batches import BatchBuilder, BatchSettings, StepInfo, TrainBatch, WindowBatches

_SHARED = {"base", "batches", "objectives"}  # building blocks, not methods
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SHARED and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "METHODS",
    "BatchBuilder",
    "BatchSettings",
    "Domain",
    "Method",
    "MethodContext",
    "Phase",
    "StepInfo",
    "TrainBatch",
    "WindowBatches",
    "saved_phase",
]
