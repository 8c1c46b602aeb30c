"""The backbone interface: item vectors in, sequence vectors out."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from padrec.registry import Registry


@dataclass
class BackboneConfig:
    """Fields every backbone shares.

    Attributes:
        hidden_size: d, the width of item and sequence vectors.
        max_len: L, the longest history the backbone accepts (sizes position tables).
        dropout: dropout probability inside the backbone.
    """

    hidden_size: int = 64
    max_len: int = 50
    dropout: float = 0.2


class Backbone(nn.Module):
    """A sequence encoder that knows nothing of ids, text, scoring or losses.

    ``forward(x, pad_mask)`` takes item vectors ``x`` (B×L×d) of a left-padded history and
    ``pad_mask`` (B×L, True at padding) and returns B×L×d sequence vectors; position t may
    only depend on positions <= t (causal), so every position can be trained as a
    next-item prediction. The last position (index -1) summarises the whole history.

    ``bounded_output`` says whether the output's scale is bounded whatever the scale of the
    input vectors (a final LayerNorm, a tanh-bounded state). A method that hands a trained
    backbone new item vectors can read it to choose how to initialise them.
    """

    config_class: type = BackboneConfig
    bounded_output: bool = True

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


BACKBONES: Registry[Backbone] = Registry("backbone", Backbone)
