"""NARM: a GRU with a global and an attentive local encoder (Li et al., CIKM 2017,
'Neural Attentive Session-based Recommendation').

With h_1..h_T the states of one GRU over the (embedding-dropped) item vectors, the output
at position t is

    c_g = h_t                                            (global encoder: the last state)
    α_tj = vᵀ σ(A1 h_t + A2 h_j),  j <= t, j a real item  (σ = sigmoid)
    c_l = Σ_j α_tj h_j                                    (local encoder)
    out_t = B · Dropout([c_g ; c_l])                      (B: 2h -> d, no bias)

and the method's dot product with item vector e_i gives the paper's bilinear score
e_iᵀ B c_t. Every position t gets its output from the prefix ending at t (nothing looks
ahead), so the backbone is causal and trains on shifted windows, every position a target:
the same (prefix, target) terms per epoch as the paper's and RecBole's prefix examples (one
prediction per prefix, ``split.train_examples: prefixes``), in about 1/L of the steps.

Choices where the paper leaves room (sources: the paper; RecBole's ``narm.py``; the
authors' Theano release ``lijingsdu/sessionRec_NARM``):

- One GRU serves both encoders (RecBole and the authors' code: c_g and the h_j of c_l are
  states of the same GRU). The GRU has no biases (RecBole), which also keeps left padding
  exact: padded inputs are set to zero, and a bias-free GRU maps a zero input and a zero
  state to a zero state (see ``gru4rec.py``), so every real position equals a run over the
  real items alone. The authors' GRU has zero-initialised biases and hard_sigmoid gates.
- σ is the logistic sigmoid (the paper's example activation, RecBole; the authors' code
  uses hard_sigmoid).
- α is not normalised (the paper's formula and RecBole). ``attention: softmax`` normalises
  it with a softmax over the real j <= t instead, as the authors' Theano code does.
- A1, A2, v and B have no biases; Linear weights are Xavier-normal, the GRU keeps PyTorch's
  initialisation (RecBole). Dropout 0.25 on the item vectors and 0.5 on [c_g ; c_l]
  (paper, RecBole and the authors' code).
- The concatenation order is the paper's [c_g ; c_l] (RecBole and the authors' code use
  [c_l ; c_g], the same model up to a permutation of B's columns).

Cost: the attention at every position scores O(L²) (t, j) pairs, each through an h-wide
σ; ``pack_pairs`` scores only the pairs with j <= t and j real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig


@dataclass
class NARMConfig(BackboneConfig):
    """NARM settings. Defaults follow the paper and RecBole (dropout 0.25 / 0.5, one layer).

    Attributes:
        dropout: dropout on the item vectors before the GRU (paper, RecBole: 0.25); also
            between stacked GRU layers.
        ct_dropout: dropout on [c_g ; c_l] before B (paper, RecBole: 0.5).
        num_layers: stacked GRU layers (paper: 1; RecBole's ``n_layers``).
        gru_hidden_size: h, the width of the GRU state and of the attention; None = ``hidden_size``.
        attention: ``none`` = raw α_tj = vᵀσ(A1 h_t + A2 h_j) (paper, RecBole); ``softmax`` =
            α normalised over the real positions j <= t (the authors' Theano code).
        init: ``xavier_normal`` Linear weights (RecBole) or PyTorch's ``default``.
        pack_pairs: score only the P (query t, key j) pairs the attention uses (j <= t, j
            real), gathered into one P×h matrix, instead of the dense B×L×L×h grid. Same
            outputs; about 1.6× faster on CPU when half of a batch is padding. False keeps
            static shapes (no ``nonzero()`` host sync on CUDA).
    """

    dropout: float = 0.25
    ct_dropout: float = 0.5
    num_layers: int = 1
    gru_hidden_size: int | None = None
    attention: Literal["none", "softmax"] = "none"
    init: Literal["xavier_normal", "default"] = "xavier_normal"
    pack_pairs: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.ct_dropout < 1.0:
            raise ValueError(f"ct_dropout must be in [0, 1), got {self.ct_dropout}")
        if self.num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        if self.gru_hidden_size is not None and not 1 <= self.gru_hidden_size <= 16384:
            raise ValueError(f"gru_hidden_size must be between 1 and 16384, got {self.gru_hidden_size}")


@BACKBONES.register("narm")
class NARM(Backbone):
    """GRU + attention over its states, output ``B [h_t ; Σ_j α_tj h_j]`` at every position.

    ``forward(x: B×L×d, pad_mask: B×L bool, True at padding) -> B×L×d``; output t depends on
    positions <= t only and is zero at padding positions.
    """

    config_class = NARMConfig
    causal = True  # output t reads the GRU states <= t only
    adds_positions = False  # order comes from the recurrence
    bounded_output = True  # |h| < 1 (tanh), σ in (0, 1): |out| bounded by the weights and L, not by x

    def __init__(self, config: NARMConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        h = config.gru_hidden_size or d
        self.input_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            d,
            h,
            num_layers=config.num_layers,
            bias=False,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.a1 = nn.Linear(h, h, bias=False)  # applied to the query state h_t
        self.a2 = nn.Linear(h, h, bias=False)  # applied to the attended states h_j
        self.v = nn.Linear(h, 1, bias=False)
        self.ct_dropout = nn.Dropout(config.ct_dropout)
        self.b = nn.Linear(2 * h, d, bias=False)
        if config.init == "xavier_normal":
            for layer in (self.a1, self.a2, self.v, self.b):
                nn.init.xavier_normal_(layer.weight)

    def attention_weights(self, states: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """α: B×L×L, ``α[b, t, j]`` the weight of state j in the local encoder of position t
        (zero where j > t or j is padding), from ``states`` B×L×h and ``pad_mask`` B×L."""
        B, L, h = states.shape
        idx = torch.arange(L, device=states.device)
        allowed = (idx[None, :] <= idx[:, None]) & ~pad_mask[:, None, :]  # B×L×L: j <= t, j real
        softmax = self.config.attention == "softmax"
        if softmax:  # every query also sees itself, so a row that is all padding stays finite
            allowed = allowed | torch.eye(L, dtype=torch.bool, device=states.device)
        fill = float("-inf") if softmax else 0.0
        q, k = self.a1(states), self.a2(states)  # A1 h_t, A2 h_j: B×L×h
        if self.config.pack_pairs:
            flat = allowed.flatten().nonzero().squeeze(1)  # P allowed (b, t, j), as b·L² + t·L + j
            query, key = flat // L, (flat // (L * L)) * L + flat % L  # rows b·L + t and b·L + j
            pre = q.reshape(B * L, h).index_select(0, query) + k.reshape(B * L, h).index_select(0, key)
            pair_scores = self.v(torch.sigmoid(pre)).squeeze(-1)  # P
            scores = pair_scores.new_full((B * L * L,), fill).index_copy(0, flat, pair_scores).view(B, L, L)
        else:  # B×L×1×h + B×1×L×h -> σ(...) B×L×L×h -> vᵀ· B×L×L
            scores = self.v(torch.sigmoid(q.unsqueeze(2) + k.unsqueeze(1))).squeeze(-1).masked_fill(~allowed, fill)
        return torch.softmax(scores, dim=-1) if softmax else scores

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        x = self.input_dropout(x.masked_fill(pad_mask.unsqueeze(-1), 0.0))
        states, _ = self.gru(x)  # B×L×h; exactly zero at the leading padding
        local = torch.bmm(self.attention_weights(states, pad_mask), states)  # c_l: B×L×h
        c = self.ct_dropout(torch.cat([states, local], dim=-1))  # [c_g ; c_l]: B×L×2h
        return self.b(c).masked_fill(pad_mask.unsqueeze(-1), 0.0)
