"""DisCo (Du et al., KDD 2024: disentanglement and collaboration between tabular and semantic
space) adapted to sequential recommendation, as PAD uses it as a baseline (PAD §4.1.3): ID and
text views split in chunks, a dual-side attentive network, a CLUB disentanglement loss and an
InfoMax sufficiency loss. See :mod:`padrec.methods.disco.method`."""

from padrec.methods.disco.config import DisCoConfig
from padrec.methods.disco.method import DisCo

__all__ = ["DisCo", "DisCoConfig"]
