"""Registered methods. Importing this package registers the built-in ones."""

from padrec.methods.base import METHODS, Method, MethodContext, Phase, TrainBatch
from padrec.methods import pad, sequential  # noqa: F401  (registration)

__all__ = ["METHODS", "Method", "MethodContext", "Phase", "TrainBatch"]
