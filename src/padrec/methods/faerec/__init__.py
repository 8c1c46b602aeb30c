"""FAERec: Fusion and Alignment Enhancement for tail-item sequential recommendation."""

from padrec.methods.faerec.config import FAERecConfig
from padrec.methods.faerec.method import FAERec, curriculum_weights

__all__ = ["FAERec", "FAERecConfig", "curriculum_weights"]
