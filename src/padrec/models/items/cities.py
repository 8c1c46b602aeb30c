"""CITIES' item side (Jang et al., ICDM 2020): an ID table whose tail rows are replaced by
embeddings inferred from the items' contexts, and the embedding-inference function F_φ.

- :class:`TailInferredItems`: ``E'[i] = Ê[i]`` for replaced items, ``E[i]`` otherwise; one
  table on both sides (history and candidates), as CITIES writes the inferred rows into the
  backbone's item-embedding layer.
- :class:`EmbeddingInference` (F_φ, official code ``model.py``): a context ``c`` is the 2c+1
  items around one occurrence of an item, the item itself replaced by a mask token. Each
  context item's frozen embedding is scaled by a learned per-position weight, a sinusoidal
  position encoding (divided by √d) is added, a Transformer *context interpreter* encodes the
  context (padding hidden as keys) and its outputs are averaged over the non-padding
  positions; a Transformer *context aggregator* runs over the K contexts of the item, their
  outputs are averaged and a final Linear gives Ê_i. Both Transformers are post-LN blocks
  ``x = LN(x + Dropout(sublayer(x)))`` with an FFN d → 2d → d (ReLU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from padrec.models.items.base import ItemRepresentation
from padrec.models.items.id import IDEmbedding


class TailInferredItems(ItemRepresentation):
    """An ID table ``E`` ((N+1)×d) with inferred rows: ``E'[i] = inferred[i]`` where
    ``replaced[i] = 1``, else ``E[i]``. ``inferred`` and ``replaced`` are ``requires_grad=False``
    parameters (phase state of CITIES' ``infer`` phase); until they are set ``E' = E``."""

    def __init__(self, num_items: int, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.num_items, self.dim = num_items, dim
        self.ids = IDEmbedding(num_items, dim, init_std=init_std)
        self.inferred = nn.Parameter(torch.zeros(num_items + 1, dim), requires_grad=False)
        self.replaced = nn.Parameter(torch.zeros(num_items + 1), requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> S×d rows of E'."""
        swap = self.replaced[ids].bool().unsqueeze(-1)
        return torch.where(swap, self.inferred[ids], self.ids(ids))

    def all(self) -> torch.Tensor:
        """E', (N+1)×d (row 0 zeros)."""
        return torch.where(self.replaced.bool().unsqueeze(-1), self.inferred, self.ids.all())

    @torch.no_grad()
    def set_inferred(self, items: torch.Tensor, vectors: torch.Tensor) -> None:
        """Replace rows ``items`` ((M,) ids ≥ 1) by ``vectors`` ((M, d)); every other row is E."""
        self.inferred.zero_()
        self.replaced.zero_()
        self.inferred[items] = vectors.to(self.inferred.dtype)
        self.replaced[items] = 1.0


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal encodings ``sin/cos(t / 10000^(2k/d))`` (even/odd columns)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out


class EncoderLayer(nn.Module):
    """One post-LN Transformer block: self-attention, then FFN d → 2d → d, each
    ``LN(x + Dropout(sublayer(x)))``.

    Args:
        dim: d; num_heads: attention heads (must divide d); attention_dropout: on the
        attention probabilities; ffn_dropout: inside the FFN; residual_dropout: on each
        sub-layer's output; eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attention_dropout: float,
        ffn_dropout: float,
        residual_dropout: float,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.num_heads, self.attention_dropout = num_heads, attention_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Dropout(ffn_dropout), nn.Linear(2 * dim, dim))
        self.drop1, self.drop2 = nn.Dropout(residual_dropout), nn.Dropout(residual_dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)

    def attention(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """x: (B, S, d), keep: (B, S) bool (True = a key that may be attended) or None -> (B, S, d)."""
        B, S, d = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]
        p = self.attention_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, S, d))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, S, d), keep: (B, S) bool or None -> (B, S, d)."""
        x = self.norm1(x + self.drop1(self.attention(x, keep)))
        return self.norm2(x + self.drop2(self.ffn(x)))


class EmbeddingInference(nn.Module):
    """F_φ: contexts of an item -> its inferred embedding (module docstring).

    Args:
        dim: d.
        context_size: c, items kept on each side of the masked position (contexts are 2c+1 long).
        num_heads, num_layers: of both the interpreter and the aggregator.
        attention_dropout, ffn_dropout, residual_dropout: of their blocks.
        position_dropout: after adding the position encoding.
        init_std: std of the mask token's N(0, std) initialisation.
    """

    def __init__(
        self,
        dim: int,
        context_size: int = 24,
        num_heads: int = 4,
        num_layers: int = 2,
        attention_dropout: float = 0.5,
        ffn_dropout: float = 0.2,
        residual_dropout: float = 0.2,
        position_dropout: float = 0.2,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.context_size = dim, context_size
        length = 2 * context_size + 1
        self.mask_token = nn.Parameter(torch.randn(dim) * init_std)
        self.position_weight = nn.Parameter(torch.ones(length))
        self.register_buffer("position_code", sinusoid_table(length, dim) / math.sqrt(dim), persistent=False)
        self.position_dropout = nn.Dropout(position_dropout)

        def blocks() -> nn.ModuleList:
            args = (dim, num_heads, attention_dropout, ffn_dropout, residual_dropout)
            return nn.ModuleList(EncoderLayer(*args) for _ in range(num_layers))

        self.interpreter = blocks()
        self.aggregator = blocks()
        self.out = nn.Linear(dim, dim)

    def embed(self, table: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Input vectors of contexts (..., S) ids in 0..N+1 (N+1 = the mask token) over the
        frozen (N+1)×d ``table`` -> (..., S, d), position-weighted and position-encoded."""
        full = torch.cat([table, self.mask_token.unsqueeze(0).to(table.dtype)])
        x = full[contexts] * self.position_weight.unsqueeze(-1)
        return self.position_dropout(x + self.position_code)

    def interpret(self, table: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """One vector per context: (M, S) ids -> (M, d), the interpreter's outputs averaged
        over the context's non-padding positions (the masked position included)."""
        keep = contexts > 0
        x = self.embed(table, contexts)
        for layer in self.interpreter:
            x = layer(x, keep)
        w = keep.unsqueeze(-1).to(x.dtype)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)

    def aggregate(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, K, d) context vectors of B items -> (B, d) inferred embeddings."""
        for layer in self.aggregator:
            vectors = layer(vectors)
        return self.out(vectors.mean(1))

    def forward(self, table: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """(B, K, S) contexts of B items (K each) -> (B, d) inferred embeddings."""
        B, K, S = contexts.shape
        return self.aggregate(self.interpret(table, contexts.reshape(B * K, S)).view(B, K, -1))
