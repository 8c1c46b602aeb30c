"""PAD (Pre-train, Align, and Disentangle; SIGIR 2025): its config and its method."""

from padrec.methods.pad.config import EXPERTS, PADConfig
from padrec.methods.pad.method import PAD

__all__ = ["EXPERTS", "PAD", "PADConfig"]
