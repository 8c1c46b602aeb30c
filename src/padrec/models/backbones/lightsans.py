"""LightSANs: low-rank decomposed self-attention with decoupled positions (Fan et al., SIGIR 2021).

One layer, for hidden states ``H`` (L×d) of a history, learned positions ``P`` (L×d) and the
real (non-padded) positions ``R``:

- projections ``Q = H W_Q``, ``K = H W_K``, ``V = H W_V`` (each L×d, with biases);
- item-to-interest aggregation, separately for keys and values with learned
  ``Θ_K, Θ_V`` (d×k): ``A = softmax_over_positions(K Θ_K)`` (L×k, each of the k columns
  normalised over the real positions R only), ``K~ = Aᵀ K`` (k×d); likewise ``V~ = Bᵀ V``
  with ``B = softmax_over_positions(V Θ_V)``;
- item-to-interest interaction, per head i of width ``d_h = d / heads``:
  ``item_i = softmax(Q_i K~_iᵀ / sqrt(d_h)) V~_i`` (L×k attention instead of L×L);
- decoupled position encoding: ``P' = LayerNorm(P)``,
  ``pos_i = softmax((P' U_Q)_i (P' U_K)_iᵀ / sqrt(d_h)) V_i`` over the real keys R, an
  attention computed from positions only whose weights mix the full (not aggregated) values;
- ``H1 = LayerNorm(H + Dropout((item + pos) W_O))`` (heads concatenated), then
  ``H2 = LayerNorm(H1 + Dropout(GELU(H1 W_1) W_2))`` with an FFN of width ``4d``.

The backbone applies ``LayerNorm`` and dropout to the item vectors (no positions are added to
them: positions enter through the position attention only), runs ``num_layers`` layers and
zeros the output at padding.

Where the paper leaves a choice open, this follows RecBole's ``LightSANs`` (written by the
paper's first author): post-LN sub-layers; separate ``Θ`` for keys and values, one per layer,
over the full width (the k interests are shared by the heads) and initialised N(0, 1); the
aggregation acts on the projected keys/values (biases included); one position table shared by
the layers, each layer with its own position LayerNorm and position query/key projections;
attention dropout on the item-to-interest probabilities only; ``LayerNorm`` + dropout on the
input; N(0, 0.02) weights and zero biases elsewhere; LayerNorm eps 1e-12. Three deliberate
differences from RecBole, which masks nothing: (1) padded positions are masked in the
interest softmax and as position-attention keys (RecBole lets padding take interest weight);
(2) both softmaxes normalise over keys, as in the paper's scaled dot products (RecBole's
code normalises over the query axis, ``dim=-2``), and the position scores are scaled by
``1/sqrt(d_h)`` (RecBole multiplies by a further ``1/sqrt(2 d_h)``, TUPE's scale factor 2);
(3) positions are right-aligned (the last item always gets row ``max_len - 1``, as in
padrec's SASRec), because histories are left-padded; RecBole numbers positions from the
first item of a right-padded window.

Interests aggregate over the whole window, so the backbone is not causal: padrec trains it on
prefix examples with the loss at the last position (RecBole trains it the same way).
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
class LightSANsConfig(BackboneConfig):
    """LightSANs settings. Defaults follow RecBole's LightSANs (2 layers, 2 heads, dropout
    0.5, FFN 4d with GELU, LayerNorm eps 1e-12, N(0, 0.02) init) with k = 5 interests (RecBole's default; it suggests k ≈ 0.1 · max_len).

    Attributes:
        num_layers: number of LightSANs layers.
        num_heads: attention heads; must divide ``hidden_size``.
        k_interests: k, the number of latent interests keys and values are aggregated into
            (RecBole suggests about ``0.1 * max_len``; the paper used 10-20 for lengths 100-200).
        ffn_multiplier: the FFN's inner width is ``ffn_multiplier * hidden_size``.
        activation: FFN activation.
        dropout: dropout on the input, after each sub-layer's output projection.
        attention_dropout: dropout on the item-to-interest attention probabilities;
            None = ``dropout``.
        layer_norm_eps: epsilon of every LayerNorm.
        init_std: standard deviation of the N(0, init_std) Linear and position weights
            (biases zero, the interest projections ``Θ`` N(0, 1)).
    """

    num_layers: int = 2
    num_heads: int = 2
    k_interests: int = 5
    ffn_multiplier: int = 4
    activation: Literal["relu", "gelu"] = "gelu"
    dropout: float = 0.5
    attention_dropout: float | None = None
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_heads < 1 or self.hidden_size % self.num_heads != 0:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_layers < 1 or self.ffn_multiplier < 1:
            raise ValueError("num_layers and ffn_multiplier must be >= 1")
        if not 1 <= self.k_interests <= 4096:
            raise ValueError(f"k_interests must be between 1 and 4096, got {self.k_interests}")
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be in [0, 1), got {self.attention_dropout}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be positive, got {self.init_std}")


def aggregate_interests(x: torch.Tensor, theta: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    """Item-to-interest aggregation ``softmax_over_positions(x Θ)ᵀ x``.

    ``x``: B×L×d, ``theta``: d×k, ``pad_mask``: B×L (True at padding). Returns B×k×d. Padded
    positions get zero weight; a fully padded row gets uniform weights (finite, and its
    outputs are discarded).
    """
    logits = x @ theta  # B×L×k
    logits = logits.masked_fill(pad_mask.unsqueeze(-1), torch.finfo(logits.dtype).min)
    weights = torch.softmax(logits, dim=1)
    return weights.transpose(1, 2) @ x


class LowRankAttention(nn.Module):
    """The LightSANs attention sub-layer without its residual: item-to-interest attention plus
    decoupled position attention, then the output projection and dropout.

    ``forward(h: B×L×d, positions: L×d, pad_mask: B×L, allowed: B×1×L×L) -> B×L×d``, where
    ``allowed[b, 0, i, j]`` says position query i may attend to key j.
    """

    def __init__(self, config: LightSANsConfig) -> None:
        super().__init__()
        d, k = config.hidden_size, config.k_interests
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.key_interests = nn.Parameter(torch.randn(d, k))  # Θ_K
        self.value_interests = nn.Parameter(torch.randn(d, k))  # Θ_V
        self.position_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.position_query = nn.Linear(d, d)
        self.position_key = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.attention_dropout = config.dropout if config.attention_dropout is None else config.attention_dropout
        self.dropout = nn.Dropout(config.dropout)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """...×N×d -> ...×heads×N×d_h."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(-3, -2)

    def item_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Item-to-interest attention from projected ``q, k, v`` (B×L×d) -> B×heads×L×d_h."""
        keys = self.heads(aggregate_interests(k, self.key_interests, pad_mask))  # B×heads×k×d_h
        values = self.heads(aggregate_interests(v, self.value_interests, pad_mask))
        p = self.attention_dropout if self.training else 0.0
        return F.scaled_dot_product_attention(self.heads(q), keys, values, dropout_p=p)

    def position_attention(self, v: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Position-to-position attention over the projected values ``v`` (B×L×d), from
        ``positions`` (L×d) alone, on the keys ``allowed`` (B×1×L×L) -> B×heads×L×d_h."""
        p = self.position_norm(positions)
        q, k = self.heads(self.position_query(p)), self.heads(self.position_key(p))  # heads×L×d_h
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # heads×L×L, shared by the batch
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)  # B×heads×L×L
        return weights @ self.heads(v)

    def forward(
        self, h: torch.Tensor, positions: torch.Tensor, pad_mask: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        context = self.item_attention(q, k, v, pad_mask) + self.position_attention(v, positions, allowed)
        return self.dropout(self.out(context.transpose(1, 2).flatten(2)))


class LightSANsLayer(nn.Module):
    """``LN(h + attention)`` then ``LN(h + FFN(h))``; arguments as :class:`LowRankAttention`."""

    def __init__(self, config: LightSANsConfig) -> None:
        super().__init__()
        d, inner = config.hidden_size, config.ffn_multiplier * config.hidden_size
        self.attention = LowRankAttention(config)
        self.ffn = nn.Sequential(
            nn.Linear(d, inner), _ACTIVATIONS[config.activation](), nn.Linear(inner, d), nn.Dropout(config.dropout)
        )
        self.norm1 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(
        self, h: torch.Tensor, positions: torch.Tensor, pad_mask: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        h = self.norm1(h + self.attention(h, positions, pad_mask, allowed))
        return self.norm2(h + self.ffn(h))


@BACKBONES.register("lightsans")
class LightSANs(Backbone):
    """Low-rank decomposed self-attention over item vectors.

    ``forward(x: B×L×d, pad_mask: B×L bool, True at padding) -> B×L×d`` with L <= max_len.
    The position table is right-aligned (index -1 always uses row ``max_len - 1``), so a
    history gives the same outputs whatever the amount of left padding. Outputs at padding
    positions are zeros and padded inputs influence nothing.
    """

    config_class = LightSANsConfig
    causal = False  # interests aggregate over the whole window
    adds_positions = True  # a learned position table, used by the decoupled position attention
    bounded_output = True  # every layer ends in LayerNorm

    def __init__(self, config: LightSANsConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.position = nn.Embedding(config.max_len, d)
        self.input_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.input_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(LightSANsLayer(config) for _ in range(config.num_layers))
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, self.config.init_std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, LowRankAttention):
                nn.init.normal_(module.key_interests)
                nn.init.normal_(module.value_interests)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        if L > self.config.max_len:
            raise ValueError(f"history length {L} exceeds max_len {self.config.max_len}")
        positions = self.position.weight[self.config.max_len - L :]  # L×d, right-aligned
        # allowed[b, 0, i, j]: key j is a real item, or j == i (keeps padded query rows finite)
        diagonal = torch.eye(L, dtype=torch.bool, device=x.device)
        allowed = (~pad_mask[:, None, :] | diagonal).unsqueeze(1)  # B×1×L×L
        h = self.input_dropout(self.input_norm(x.masked_fill(pad_mask.unsqueeze(-1), 0.0)))
        for layer in self.layers:
            h = layer(h, positions, pad_mask, allowed)
        return h.masked_fill(pad_mask.unsqueeze(-1), 0.0)
