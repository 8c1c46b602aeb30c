"""gMLP: channel MLPs gated by a Spatial Gating Unit instead of attention (Liu, Dai, So & Le,
"Pay Attention to MLPs", NeurIPS 2021), in a causal form for next-item prediction
(``gmlp``) and in the paper's bidirectional form (``gmlp_bidirectional``).

For the B×L×d hidden states h of a window of n = ``max_len`` positions, one block is

    Z      = GELU(LN(h) U + c)                     U: d × d_ffn, d_ffn = ffn_multiplier · d
    Z1, Z2 = Z[..., :d_ffn/2], Z[..., d_ffn/2:]    the two halves of the channels (u, v)
    s(Z)   = Z1 ⊙ (W · LN(Z2) + b)                 W: n × n along the sequence, b ∈ R^n
    h      ← h + Dropout(s(Z) V + e)               V: d_ffn/2 × d

and ``num_layers`` blocks are followed by a final LayerNorm. ``(W · Y)[t] = Σ_s W[t, s] Y[s]``
mixes positions with weights shared by all channels; ``b[t]`` is one scalar per output
position, broadcast over the channels (the paper's ``f_{W,b}(Z) = WZ + b``).

Choices where the paper leaves room, and why:

- **Split convention**: as in the paper, U projects to the full d_ffn and Z is split into
  two halves of d_ffn/2 (Z1 the multiplicative bypass, Z2 the gate input); V maps d_ffn/2
  back to d. With FAERec's "FFN 4d", d_ffn = 4d and u, v have 2d channels each.
- **Causal W**: the paper's W is a full n × n matrix (its tasks are bidirectional: ImageNet,
  masked language modelling). Here W is masked lower-triangular (``W[t, s] = 0`` for s > t),
  the autoregressive restriction used by causal gMLPs (e.g. the ``causal`` option of
  lucidrains/g-mlp-pytorch, EleutherAI/gpt-neox#339); every other operation is
  position-wise, so output t depends on positions <= t only. ``gmlp_bidirectional`` keeps the
  paper's full W; it is not causal, so padrec trains it on prefix examples unless a config
  asks for the look-ahead (``split.allow_look_ahead``), as a release that trains a
  bidirectional gMLP on shifted windows does.
- **End-aligned weights**: histories are left-padded, so a window of L <= n positions uses the
  LAST L rows and columns, ``W[n-L:, n-L:]`` and ``b[n-L:]``: the most recent item always
  has row n-1, and real positions give the same outputs whatever the amount of left
  padding (padded positions contribute nothing, below).
- **Padding**: padded inputs are set to zero, LN(Z2) is zeroed at padded positions before
  the spatial projection, so no padded content reaches a real position, and outputs at
  padding are zeros.
- **Initialisation**: the paper finds it critical to start with W near zero and b = 1, so
  ``f_{W,b} ≈ 1`` and ``s(Z) ≈ Z1``: each block starts as a regular token-wise FFN
  ``h + V·Z1`` (not as the identity) and spatial mixing is injected gradually. Here
  ``W ~ N(0, spatial_init_std²)`` on and below the diagonal (zeros above, never used),
  b = 1. The channel projections use N(0, 0.02) weights with zero biases (``init:
  normal``, padrec's SASRec/RecBole convention; the paper does not fix them) or PyTorch's
  ``default``.
- **Final LayerNorm**: the paper's block pseudo-code has none. The blocks are pre-norm
  residual, so without one the output scale follows the input scale; a final LayerNorm
  (as in pre-LN transformers) bounds it, hence ``bounded_output = True``.
- **Dropout**: on the input item vectors (as padrec's SASRec and GRU4Rec) and on each
  block's output before the residual sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig


@dataclass
class GMLPConfig(BackboneConfig):
    """gMLP settings (defaults: 2 blocks, d_ffn = 4d with GELU, as FAERec uses gMLP).

    Attributes:
        num_layers: number of gMLP blocks.
        ffn_multiplier: d_ffn = ``ffn_multiplier * hidden_size``, split into two halves of
            d_ffn/2 for the gate (the paper's convention); d_ffn must be even.
        layer_norm_eps: epsilon of every LayerNorm.
        spatial_init_std: standard deviation of the near-zero initial spatial weights W
            (b starts at 1); 0 starts W at exactly zero.
        init: channel projections ``normal`` N(0, init_std) with zero biases, or PyTorch's
            ``default``.
        init_std: standard deviation for ``init='normal'``.
    """

    num_layers: int = 2
    ffn_multiplier: int = 4
    layer_norm_eps: float = 1e-5
    spatial_init_std: float = 1e-3
    init: Literal["normal", "default"] = "normal"
    init_std: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_layers < 1 or self.ffn_multiplier < 1:
            raise ValueError("num_layers and ffn_multiplier must be >= 1")
        if (self.ffn_multiplier * self.hidden_size) % 2:
            raise ValueError(
                f"d_ffn = ffn_multiplier * hidden_size = {self.ffn_multiplier * self.hidden_size} must be even"
            )
        if self.spatial_init_std < 0 or self.init_std <= 0 or self.layer_norm_eps <= 0:
            raise ValueError("spatial_init_std must be >= 0, init_std and layer_norm_eps > 0")


class SpatialGatingUnit(nn.Module):
    """``s(Z) = Z1 ⊙ (tril(W) · LN(Z2) + b)`` with end-aligned n×n weights.

    ``forward(z: B×L×d_ffn, pad_mask: B×L bool, True at padding) -> B×L×d_ffn/2`` with
    L <= n = max_len; LN(Z2) is zero at padded positions, so they do not reach any output.
    """

    def __init__(self, d_ffn: int, max_len: int, eps: float, init_std: float, causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.norm = nn.LayerNorm(d_ffn // 2, eps=eps)
        self.weight = nn.Parameter(torch.zeros(max_len, max_len))  # W[t, s]: output t, input s
        self.bias = nn.Parameter(torch.ones(max_len))  # b[t]
        with torch.no_grad():
            if init_std > 0:
                self.weight.normal_(0.0, init_std)
            if causal:
                self.weight.copy_(torch.tril(self.weight))

    def spatial_weights(self, L: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The L×L weights (lower-triangular when causal) and L biases of the last L positions."""
        weight = self.weight[-L:, -L:]
        return (torch.tril(weight) if self.causal else weight), self.bias[-L:]

    def forward(self, z: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        u, v = z.chunk(2, dim=-1)  # B×L×d_ffn/2 each
        v = self.norm(v).masked_fill(pad_mask.unsqueeze(-1), 0.0)
        weight, bias = self.spatial_weights(z.shape[1])
        gate = torch.matmul(weight, v) + bias[:, None]  # (L×L) @ (B×L×c) -> B×L×c
        return u * gate


class GMLPBlock(nn.Module):
    """``h + Dropout(V · s(GELU(U · LN(h))))``; ``forward(h: B×L×d, pad_mask: B×L) -> B×L×d``."""

    def __init__(self, config: GMLPConfig, causal: bool = True) -> None:
        super().__init__()
        d = config.hidden_size
        d_ffn = config.ffn_multiplier * d
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.proj_in = nn.Linear(d, d_ffn)
        self.sgu = SpatialGatingUnit(d_ffn, config.max_len, config.layer_norm_eps, config.spatial_init_std, causal)
        self.proj_out = nn.Linear(d_ffn // 2, d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, h: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        z = F.gelu(self.proj_in(self.norm(h)))  # B×L×d_ffn
        return h + self.dropout(self.proj_out(self.sgu(z, pad_mask)))


@BACKBONES.register("gmlp")
class GMLP(Backbone):
    """Causal gMLP over item vectors.

    ``forward(x: B×L×d, pad_mask: B×L bool, True at padding) -> B×L×d`` with L <= max_len:
    ``num_layers`` gMLP blocks and a final LayerNorm; zeros at padding positions.
    """

    config_class = GMLPConfig
    causal = True  # W is lower-triangular; everything else is position-wise
    adds_positions = True  # W[t, s] is indexed by (end-aligned) position: no position table needed
    bounded_output = True  # final LayerNorm

    def __init__(self, config: GMLPConfig) -> None:
        super().__init__(config)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(GMLPBlock(config, type(self).causal) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.init == "normal":
            for block in self.blocks:
                for linear in (block.proj_in, block.proj_out):
                    nn.init.normal_(linear.weight, 0.0, config.init_std)
                    nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        if L > self.config.max_len:
            raise ValueError(f"history length {L} exceeds max_len {self.config.max_len}")
        pad = pad_mask.unsqueeze(-1)
        h = self.input_dropout(x.masked_fill(pad, 0.0))
        for block in self.blocks:
            h = block(h, pad_mask)
        return self.final_norm(h).masked_fill(pad, 0.0)


@BACKBONES.register("gmlp_bidirectional")
class BidirectionalGMLP(GMLP):
    """gMLP with the paper's full spatial weights W (every position sees the whole window).

    Same shapes and settings as :class:`GMLP`; not causal, so padrec trains it on prefix
    examples (loss at the last position only) unless ``split.allow_look_ahead`` is set.
    """

    causal = False  # W is a full n × n matrix
