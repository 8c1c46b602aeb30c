"""FMLP-Rec: an all-MLP encoder whose token mixing is a learnable filter in the frequency
domain (Zhou et al., "Filter-enhanced MLP is All You Need for Sequential Recommendation",
WWW 2022).

With N = ``max_len`` and the history left-padded to the N-position window:

- embedding: ``H⁰ = Dropout(LN(X + P))`` with a learned position table P (N×d), the most
  recent item at position N-1 (the authors left-pad every history to N, so this is their
  alignment);
- filter layer: ``X_f = rfft(H, dim=sequence, norm='ortho')`` ((N//2+1)×d complex),
  ``H̃ = irfft(X_f ⊙ W, n=N, norm='ortho')`` with a learnable complex W of shape
  (N//2+1)×d, then ``H = LN(H + Dropout(H̃))``;
- point-wise FFN: ``H = LN(H + Dropout(W₂ GELU(W₁ H + b₁) + b₂))``, W₁: d -> m·d, W₂: m·d -> d;
- N_layers blocks of filter layer + FFN; the output is the last block's (post-LN).

``X_f ⊙ W`` followed by ``irfft`` is a circular convolution of the window with the real
kernel ``irfft(W)`` (the imaginary parts of W's zero-frequency bin, and of its Nyquist bin
when N is even, are discarded by ``irfft`` and get no gradient, as in the authors' code).

Choices where the paper leaves things open:

- Padding: the authors' code feeds the padded slots (padding embedding + position, after
  LayerNorm) into every FFT. Here padded positions are set to zero at the input of every
  filter layer (and used as zeros in its residual), so their content cannot leak into real
  positions, and the outputs at padding are zeros.
- Short inputs: a B×L input with L < N is treated as left-padded to N so the same filter
  applies. Because a circular convolution is shift-equivariant, zero-padding on the left
  and reading the last L outputs equals zero-padding on the right (``rfft(n=N)``) and
  reading the first L, which is what is computed; the position-wise layers run on L
  positions only. So a history gives the same outputs whatever the amount of padding.
- Initialisation follows the authors' code: W ~ N(0, 0.02²) (stored as a real
  (N//2+1)×d×2 tensor), Linear and position weights N(0, 0.02²), zero biases, LayerNorm
  1/0, eps 1e-12; each layer draws its own weights (the authors deep-copy one layer, so
  their filters start identical; an implementation accident, not a method choice).
- Dropout 0.5: the authors' default ``hidden_dropout_prob`` (the same value is used for
  the embedding, filter and FFN dropouts), also padrec's SASRec default.

The filter sees the whole window, so the backbone is not causal: padrec trains it on prefix
examples with the loss at the last position, as the authors do (one example per prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from padrec.models.backbones import sasrec
from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig


@dataclass
class FMLPRecConfig(BackboneConfig):
    """FMLP-Rec settings; defaults follow the authors' code (2 blocks, GELU, dropout 0.5,
    LayerNorm eps 1e-12, N(0, 0.02) initialisation).

    Attributes:
        num_layers: number of filter + FFN blocks.
        ffn_multiplier: the FFN's inner width is ``ffn_multiplier * hidden_size``.
        activation: FFN activation, ``gelu`` (authors' default, erf form) or ``relu``.
        layer_norm_eps: epsilon of every LayerNorm.
        init_std: standard deviation of the normal initialisation of the filters, the
            Linear weights and the position table.
    """

    num_layers: int = 2
    ffn_multiplier: int = 4
    activation: Literal["gelu", "relu"] = "gelu"
    dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_layers < 1 or self.ffn_multiplier < 1:
            raise ValueError("num_layers and ffn_multiplier must be >= 1")
        if not self.layer_norm_eps > 0 or not self.init_std > 0:
            raise ValueError("layer_norm_eps and init_std must be > 0")


class FilterLayer(nn.Module):
    """``LN(h + Dropout(irfft(rfft(h) ⊙ W)))`` over an N-position window.

    ``forward(h: B×L×d, with L <= N and padded positions already zero) -> B×L×d``; the
    L positions are the last L of the window (the first N-L are zeros).
    """

    def __init__(self, config: FMLPRecConfig) -> None:
        super().__init__()
        n, d = config.max_len, config.hidden_size
        self.window = n
        # W as a real tensor (N//2+1)×d×2: [..., 0] real part, [..., 1] imaginary part.
        self.weight = nn.Parameter(torch.randn(n // 2 + 1, d, 2) * config.init_std)
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def filter(self, h: torch.Tensor) -> torch.Tensor:
        """``irfft(rfft(window) ⊙ W)`` at the window's last L positions; h: B×L×d -> B×L×d."""
        L = h.shape[1]
        # Zero-padding on the right instead of the left: the circular convolution is
        # shift-equivariant, so the first L outputs here are the last L of the left-padded window.
        # Half precision FFTs are unsupported on CPU and limited to powers of two on CUDA.
        work = h if h.dtype in (torch.float32, torch.float64) else h.float()
        spectrum = torch.fft.rfft(work, n=self.window, dim=1, norm="ortho")  # B×(N//2+1)×d complex
        weight = torch.view_as_complex(self.weight.to(work.dtype))  # (N//2+1)×d complex
        out = torch.fft.irfft(spectrum * weight, n=self.window, dim=1, norm="ortho")  # B×N×d
        return out[:, :L].to(h.dtype)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h + self.dropout(self.filter(h)))


class FeedForward(sasrec.FeedForward):
    """SASRec's position-wise FFN in a post-LN residual: ``LN(h + FFN(h))``; B×L×d -> B×L×d."""

    def __init__(self, config: FMLPRecConfig) -> None:
        super().__init__(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h + self.net(h))


class FMLPBlock(nn.Module):
    """Filter layer then FFN; ``forward(h: B×L×d, pad: B×L×1 bool) -> B×L×d``. Padded
    positions are zeroed first, so neither the FFT nor the residual sees them."""

    def __init__(self, config: FMLPRecConfig) -> None:
        super().__init__()
        self.filter = FilterLayer(config)
        self.ffn = FeedForward(config)

    def forward(self, h: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.filter(h.masked_fill(pad, 0.0)))


@BACKBONES.register("fmlprec")
class FMLPRec(Backbone):
    """Filter-enhanced MLP over item vectors (see the module docstring for the formulas).

    ``forward(x: B×L×d, pad_mask: B×L bool, True at padding) -> B×L×d`` with L <= max_len.
    Every output depends on the whole (real part of the) window, so ``causal = False``.
    Positions are right-aligned (index -1 gets position ``max_len - 1``); outputs at real
    positions do not depend on the amount of left padding; outputs at padding are zeros.
    """

    config_class = FMLPRecConfig
    causal = False  # the frequency-domain filter mixes every position of the window
    adds_positions = True  # a learned position table added to the item vectors
    bounded_output = True  # every block ends with a LayerNorm

    def __init__(self, config: FMLPRecConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.position = nn.Embedding(config.max_len, d)
        self.input_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(FMLPBlock(config) for _ in range(config.num_layers))
        self._init_weights()

    def _init_weights(self) -> None:
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, FilterLayer):
                nn.init.normal_(module.weight, 0.0, std)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        if L > self.config.max_len:
            raise ValueError(f"history length {L} exceeds max_len {self.config.max_len}")
        pad = pad_mask.unsqueeze(-1)  # B×L×1
        h = x.masked_fill(pad, 0.0) + self.position.weight[self.config.max_len - L :]  # B×L×d
        h = self.input_dropout(self.input_norm(h))
        for block in self.blocks:
            h = block(h, pad)
        return h.masked_fill(pad, 0.0)
