"""MELT: Mutual Enhancement of Long-Tailed user and item for sequential recommendation."""

from padrec.methods.melt.config import MELTConfig
from padrec.methods.melt.method import MELT

__all__ = ["MELT", "MELTConfig"]
