"""GRU4Rec: a recurrent sequence encoder (Hidasi et al., 2016), in RecBole's form for
next-item prediction: embedding dropout, a stacked GRU, a linear map back to d.

Left padding is exact without packing: padded inputs are set to zero, and a GRU without
biases maps a zero input and a zero state to a zero state (both gates are 0.5 and the
candidate is tanh(0) = 0), so the state is still zero when the first real item arrives and
every real position equals a run over the real items alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig


@dataclass
class GRU4RecConfig(BackboneConfig):
    """GRU4Rec settings.

    Attributes:
        num_layers: stacked GRU layers; ``dropout`` also applies between them.
        gru_hidden_size: width of the GRU state; None = ``hidden_size``.
        bias: gate biases in the GRU. False (default, as RecBole) keeps left padding exact;
            True lets the leading padding (zero inputs) move the state away from zero before
            the first real item, so outputs then depend on the amount of padding.
        init: ``xavier_uniform`` GRU weights (RecBole) or PyTorch's ``default``.
    """

    dropout: float = 0.3
    num_layers: int = 1
    gru_hidden_size: int | None = None
    bias: bool = False
    init: Literal["xavier_uniform", "default"] = "xavier_uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_layers < 1:
            raise ValueError("num_layers must be >= 1")


@BACKBONES.register("gru4rec")
class GRU4Rec(Backbone):
    """Stacked GRU over item vectors.

    ``forward(x: B×L×d, pad_mask: B×L bool, True at padding) -> B×L×d``; output t is
    ``Linear(GRU state after item t)``, zero at padding positions.
    """

    config_class = GRU4RecConfig

    def __init__(self, config: GRU4RecConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        hidden = config.gru_hidden_size or d
        self.input_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            d,
            hidden,
            num_layers=config.num_layers,
            bias=config.bias,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.proj = nn.Linear(hidden, d)
        if config.init == "xavier_uniform":
            for name, weight in self.gru.named_parameters():
                if name.startswith("weight"):
                    nn.init.xavier_uniform_(weight)
                else:
                    nn.init.zeros_(weight)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        x = self.input_dropout(x.masked_fill(pad_mask.unsqueeze(-1), 0.0))
        states, _ = self.gru(x)  # x: B×L×d -> states: B×L×hidden
        return self.proj(states).masked_fill(pad_mask.unsqueeze(-1), 0.0)
