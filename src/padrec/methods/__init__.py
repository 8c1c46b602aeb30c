"""Registered methods. Importing this package registers the built-in ones."""

from padrec.methods import pad, sequential  # noqa: F401  (registration)
from padrec.methods.base import METHODS, Method, MethodContext, Phase, TrainBatch

__all__ = ["METHODS", "Method", "MethodContext", "Phase", "TrainBatch"]
