"""Caser: convolutional sequence embedding (Tang & Wang, WSDM 2018), made causal per position.

The paper embeds the last ``w`` items as a w×d "image" E and applies
  * horizontal filters of heights h = 1..w (``num_h`` each): ``c_h[i] = φ_c(F · E[i:i+h])`` at
    each of the w-h+1 offsets, max-pooled over the offsets -> ``w·num_h`` features;
  * vertical filters (``num_v``) of shape w×1: each a learned weighted sum of E's rows
    -> ``num_v·d`` features, no activation;
then ``z = φ_a(W [o; õ] + b)`` after dropout, and predicts from ``[z; P_u]`` with a user
embedding P_u. Here every position t is one such image, the rows ending at t (zeros before
the start of the history, as Caser pads short sequences with zeros), so output t is z for
the window ``t-w+1..t``: causal, and trainable at every position. There is no user
embedding (the backbone sees only item vectors), so z itself is the sequence vector.

All positions are computed at once: causal Conv1d over the zero-extended sequence followed
by a sliding max-pool for the horizontal filters, and one einsum over gathered windows for
the vertical filters; the per-position layers after the convolutions run on the real
(non-padding) positions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}
Activation = Literal["relu", "tanh", "sigmoid", "gelu", "identity"]


@dataclass
class CaserConfig(BackboneConfig):
    """Caser settings (defaults: the paper's n_h = 16, n_v = 4, ReLU for both activations).

    Attributes:
        window: w, how many most recent items (ending at t) output t looks at.
        num_h: horizontal filters per height h = 1..w.
        num_v: vertical filters.
        conv_activation: φ_c, applied to horizontal convolutions before max-pooling.
        fc_activation: φ_a, applied after the final Linear.
    """

    window: int = 5
    num_h: int = 16
    num_v: int = 4
    conv_activation: Activation = "relu"
    fc_activation: Activation = "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.num_h < 0 or self.num_v < 0 or self.num_h + self.num_v == 0:
            raise ValueError("num_h and num_v must be >= 0 and not both 0")


@BACKBONES.register("caser")
class Caser(Backbone):
    """Per-position Caser.

    ``forward(x: B×L×d, pad_mask: B×L bool, True at padding) -> B×L×d``; output t depends on
    ``x[:, t-window+1 : t+1]`` only (padded rows count as zeros) and is zero at padding.
    """

    config_class = CaserConfig
    bounded_output = False  # convolutions, max-pooling, Linear and ReLU scale with the input

    def __init__(self, config: CaserConfig) -> None:
        super().__init__(config)
        d, w = config.hidden_size, config.window
        heights = range(1, w + 1) if config.num_h > 0 else range(0)
        self.horizontal = nn.ModuleList(nn.Conv1d(d, config.num_h, kernel_size=h) for h in heights)
        self.conv_activation = _ACTIVATIONS[config.conv_activation]()
        # vertical_weight[k, i]: weight of window row i (0 = oldest) in vertical filter k
        self.vertical_weight = nn.Parameter(torch.empty(config.num_v, w))
        self.vertical_bias = nn.Parameter(torch.zeros(config.num_v))
        nn.init.uniform_(self.vertical_weight, -(w**-0.5), w**-0.5)  # Conv2d's default bound
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(w * config.num_h + config.num_v * d, d)
        self.fc_activation = _ACTIVATIONS[config.fc_activation]()

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        w = self.config.window
        x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        x_ext = F.pad(x, (0, 0, w - 1, 0))  # B×(L+w-1)×d, w-1 zero rows in front
        # Everything after the convolutions is per position: compute it for the R real
        # positions only (flat indices `rows` into B·L) and scatter back at the end.
        rows = (~pad_mask).flatten().nonzero().squeeze(1)  # R

        features = []
        if self.config.num_h > 0:
            channels = x_ext.transpose(1, 2)  # B×d×(L+w-1)
            pooled = []
            for h, conv in enumerate(self.horizontal, start=1):
                c = self.conv_activation(conv(channels))  # B×num_h×(L+w-h)
                # max over the w-h+1 offsets of height h inside the window ending at t
                pooled.append(F.max_pool1d(c, kernel_size=w - h + 1, stride=1))  # B×num_h×L
            horizontal = torch.cat(pooled, dim=1).transpose(1, 2).reshape(B * L, -1)
            features.append(horizontal.index_select(0, rows))  # R×(w·num_h)
        if self.config.num_v > 0:
            # window rows of real position (b, t) sit at flat x_ext rows b·(L+w-1) + t + i
            b, t = rows // L, rows % L
            start = b * (L + w - 1) + t
            window_rows = start[:, None] + torch.arange(w, device=x.device)  # R×w
            windows = x_ext.reshape(-1, d)[window_rows]  # R×w×d, oldest row first
            vertical = torch.einsum("rwd,vw->rvd", windows, self.vertical_weight)
            vertical = vertical + self.vertical_bias[:, None]  # R×num_v×d
            features.append(vertical.flatten(1))

        z = self.fc_activation(self.fc(self.dropout(torch.cat(features, dim=-1))))  # R×d
        return z.new_zeros(B * L, d).index_copy(0, rows, z).view(B, L, d)
