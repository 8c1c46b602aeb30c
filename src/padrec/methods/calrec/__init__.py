"""CALRec: contrastive alignment of a generative LLM for sequential recommendation."""

from padrec.methods.calrec.config import CALRecConfig
from padrec.methods.calrec.method import CALRec

__all__ = ["CALRec", "CALRecConfig"]
