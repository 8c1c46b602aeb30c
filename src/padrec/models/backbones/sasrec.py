"""SASRec: causal multi-head self-attention over a left-padded history (Kang & McAuley, 2018).

One block is ``attention -> residual -> FFN -> residual`` with LayerNorm either after each
residual sum (post-LN, ``norm_first=False``: PAD's release and RecBole) or before each
sub-layer (pre-LN, ``norm_first=True``, with a final LayerNorm, as in the original SASRec).
Attention runs through ``F.scaled_dot_product_attention`` with one boolean mask that is
causal, hides padded keys and lets every query see itself, so rows that are all padding
stay finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


@dataclass
class SASRecConfig(BackboneConfig):
    """SASRec settings. Defaults follow RecBole's SASRec (post-LN, GELU, normal(0, 0.02) init),
    the configuration measured to reach a strong ID model on Prime Pantry.

    Attributes:
        num_layers: number of attention + FFN blocks.
        num_heads: attention heads; must divide ``hidden_size``.
        ffn_multiplier: the FFN's inner width is ``ffn_multiplier * hidden_size``.
        activation: FFN activation, ``relu`` (original SASRec, PAD release) or ``gelu`` (RecBole).
        norm_first: False = post-LN (``LN(h + sublayer(h))``; PAD release, RecBole);
            True = pre-LN (``h + sublayer(LN(h))`` plus a final LayerNorm; original SASRec).
        input_layer_norm: apply LayerNorm to ``item + position`` before the blocks
            (PAD release and RecBole do; the original SASRec does not).
        layer_norm_eps: epsilon of every LayerNorm (PAD release 1e-6, RecBole 1e-12).
        scale_input: multiply item vectors by sqrt(d) before adding positions (original SASRec).
        position_embedding: add the learned position table (False when the caller has added
            positions to the inputs itself, as LLM-ESR's release does before its cross-view
            attention).
        input_dropout: dropout on the block input; None = ``dropout`` (0 when the caller has
            applied it already).
        attention_dropout: dropout on attention probabilities; None = ``dropout``.
        attention_bias: biases on the query/key/value/output projections (PAD release: none).
        init: ``normal`` = N(0, init_std) for Linear and position weights, zero biases
            (RecBole); ``xavier_normal`` = Xavier-normal weights, zero biases (PAD release);
            ``default`` = PyTorch's own initialisation.
        init_std: standard deviation for ``init='normal'``.
        pack_padding: run the position-wise layers (projections, FFN, LayerNorm, dropout)
            on the real positions only, gathered into one R×d matrix; attention scatters
            them back to B×L. Same outputs, less work when histories are short (about 60%
            of a Prime Pantry batch is padding). False keeps dense B×L×d tensors
            throughout (static shapes, no host sync on CUDA).
    """

    num_layers: int = 2
    num_heads: int = 2
    ffn_multiplier: int = 4
    activation: Literal["relu", "gelu"] = "gelu"
    norm_first: bool = False
    input_layer_norm: bool = True
    layer_norm_eps: float = 1e-12
    scale_input: bool = False
    position_embedding: bool = True
    input_dropout: float | None = None
    dropout: float = 0.5
    attention_dropout: float | None = None
    attention_bias: bool = True
    init: Literal["normal", "xavier_normal", "default"] = "normal"
    init_std: float = 0.02
    pack_padding: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_layers < 1 or self.ffn_multiplier < 1:
            raise ValueError("num_layers and ffn_multiplier must be >= 1")

    @classmethod
    def pad_release(cls, max_len: int = 20) -> SASRecConfig:
        """The SASRec of PAD's official release (its ``User_Encoder``/``TransformerEncoder``):
        d 128, 5 post-LN blocks, 2 heads, dropout 0.1 everywhere, FFN 4d with ReLU, LayerNorm
        (eps 1e-6) on item + learned position before the blocks, bias-free attention
        projections, Xavier-normal initialisation, no sqrt(d) input scaling."""
        return cls(
            hidden_size=128,
            max_len=max_len,
            dropout=0.1,
            num_layers=5,
            num_heads=2,
            ffn_multiplier=4,
            activation="relu",
            norm_first=False,
            input_layer_norm=True,
            layer_norm_eps=1e-6,
            scale_input=False,
            attention_dropout=None,
            attention_bias=False,
            init="xavier_normal",
        )


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a fused query/key/value projection.

    ``forward(h, allowed: B×1×L×L bool (True = query may attend to key), rows)``: ``h`` is
    B×L×d with ``rows=None``, or R×d holding only the real positions, whose flat indices
    into B·L are ``rows`` (R). Returns h's shape, after the output projection and dropout.
    """

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(d, 3 * d, bias=config.attention_bias)
        self.out = nn.Linear(d, d, bias=config.attention_bias)
        self.attention_dropout = config.dropout if config.attention_dropout is None else config.attention_dropout
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, h: torch.Tensor, allowed: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        B, _, L, _ = allowed.shape
        d = h.shape[-1]
        qkv = self.qkv(h)  # B×L×3d, or R×3d when packed
        if rows is not None:  # scatter the R real rows into a zero B·L×3d grid
            qkv = qkv.new_zeros(B * L, 3 * d).index_copy(0, rows, qkv)
        # -> 3 × B×heads×L×head_dim
        q, k, v = qkv.view(B, L, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attention_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B * L, d)
        y = y.index_select(0, rows) if rows is not None else y.view(B, L, d)
        return self.dropout(self.out(y))


class FeedForward(nn.Module):
    """Position-wise ``Linear(d, m·d) -> activation -> Linear(m·d, d) -> dropout``; B×L×d -> B×L×d."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.net = nn.Sequential(
            nn.Linear(d, config.ffn_multiplier * d),
            _ACTIVATIONS[config.activation](),
            nn.Linear(config.ffn_multiplier * d, d),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SASRecBlock(nn.Module):
    """One attention + FFN block, post-LN or pre-LN; ``forward(h, allowed, rows)`` with h and
    rows as in :class:`CausalSelfAttention`; returns h's shape."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.norm_first = config.norm_first
        self.attention = CausalSelfAttention(config)
        self.ffn = FeedForward(config)
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor, allowed: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        if self.norm_first:
            h = h + self.attention(self.norm1(h), allowed, rows)
            return h + self.ffn(self.norm2(h))
        h = self.norm1(h + self.attention(h, allowed, rows))
        return self.norm2(h + self.ffn(h))


@BACKBONES.register("sasrec")
class SASRec(Backbone):
    """Self-attentive sequential recommender over item vectors.

    ``forward(x: B×L×d, pad_mask: B×L bool, True at padding) -> B×L×d`` with L <= max_len.
    Learned absolute positions are right-aligned: the most recent item (index -1) always
    gets position ``max_len - 1``, so a history gives the same outputs whatever the amount
    of left padding. Outputs at padding positions are zeros.
    """

    config_class = SASRecConfig
    adds_positions = True  # a learned position table added to the item vectors

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.position = nn.Embedding(config.max_len, d) if config.position_embedding else None
        self.input_norm = nn.LayerNorm(d, eps=config.layer_norm_eps) if config.input_layer_norm else nn.Identity()
        self.input_dropout = nn.Dropout(config.dropout if config.input_dropout is None else config.input_dropout)
        self.blocks = nn.ModuleList(SASRecBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(d, eps=config.layer_norm_eps) if config.norm_first else nn.Identity()
        self.input_scale = math.sqrt(d) if config.scale_input else 1.0
        self._init_weights()

    def _init_weights(self) -> None:
        init = self.config.init
        if init == "default":
            return
        fused_qkv = {id(block.attention.qkv) for block in self.blocks}
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                weight = module.weight.data
                # A fused q/k/v weight is initialised as three separate d×d matrices.
                chunks = weight.chunk(3, 0) if id(module) in fused_qkv else (weight,)
                for w in chunks:
                    if init == "normal":
                        nn.init.normal_(w, 0.0, self.config.init_std)
                    else:
                        nn.init.xavier_normal_(w)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        if L > self.config.max_len:
            raise ValueError(f"history length {L} exceeds max_len {self.config.max_len}")
        positions = self.position.weight[self.config.max_len - L :] if self.position is not None else None  # L×d
        idx = torch.arange(L, device=x.device)
        # allowed[b, 0, i, j]: key j <= query i and (key j is a real item or j == i)
        causal = idx[None, :] <= idx[:, None]  # L×L
        diagonal = idx[None, :] == idx[:, None]
        allowed = (causal & (~pad_mask[:, None, :] | diagonal)).unsqueeze(1)  # B×1×L×L

        rows = None
        if self.config.pack_padding:
            rows = (~pad_mask).flatten().nonzero().squeeze(1)  # R flat indices of real positions
            h = x.reshape(B * L, d).index_select(0, rows) * self.input_scale
            if positions is not None:
                h = h + positions.index_select(0, rows % L)  # R×d
        else:
            h = x * self.input_scale  # B×L×d
            if positions is not None:
                h = h + positions
        h = self.input_dropout(self.input_norm(h))
        for block in self.blocks:
            h = block(h, allowed, rows)
        h = self.final_norm(h)
        if rows is not None:
            return h.new_zeros(B * L, d).index_copy(0, rows, h).view(B, L, d)
        return h.masked_fill(pad_mask.unsqueeze(-1), 0.0)
