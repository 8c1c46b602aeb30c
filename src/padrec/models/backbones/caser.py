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
by a sliding max-pool for the horizontal filters, and one einsum over unfolded windows for
the vertical filters.
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

    def __init__(self, config: CaserConfig) -> None:
        super().__init__(config)
        d, w = config.hidden_size, config.window
        self.horizontal = nn.ModuleList(nn.Conv1d(d, config.num_h, kernel_size=h) for h in range(1, w + 1))
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

        features = []
        if self.config.num_h > 0:
            channels = x_ext.transpose(1, 2)  # B×d×(L+w-1)
            pooled = []
            for h, conv in enumerate(self.horizontal, start=1):
                c = self.conv_activation(conv(channels))  # B×num_h×(L+w-h)
                # max over the w-h+1 offsets of height h inside the window ending at t
                pooled.append(F.max_pool1d(c, kernel_size=w - h + 1, stride=1))  # B×num_h×L
            features.append(torch.cat(pooled, dim=1).transpose(1, 2))  # B×L×(w·num_h)
        if self.config.num_v > 0:
            windows = x_ext.unfold(1, w, 1)  # B×L×d×w, windows[:, t, :, i] = row t-w+1+i
            vertical = torch.einsum("bldw,vw->blvd", windows, self.vertical_weight)
            vertical = vertical + self.vertical_bias[:, None]  # B×L×num_v×d
            features.append(vertical.reshape(B, L, -1))

        z = self.fc_activation(self.fc(self.dropout(torch.cat(features, dim=-1))))
        return z.masked_fill(pad_mask.unsqueeze(-1), 0.0)
