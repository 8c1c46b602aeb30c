"""LLM-ESR's dual-view sequence encoder: cross-view attention between the collaborative and the
semantic view of a history, then one shared backbone over each view.

With item views ``e = E[s_t]`` and ``m = adapter(x_{s_t})`` (B×L×d each):
``ẽ = CrossAttn(query = m, key/value = e)``, ``m̃ = CrossAttn(query = e, key/value = m)``
(the release's ``llm2id`` / ``id2llm``; without cross-attention ẽ = e, m̃ = m), and the sequence
vectors are ``[backbone(ẽ) ; backbone(m̃)]`` (B×L×2d) with the same backbone weights for both.
With a :class:`ViewEmbedding` (the release's order) each view is first scaled by √d, given the
shared positions and dropped out, so the cross-view attention sees where each item stands.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from padrec.models.backbones.base import Backbone
from padrec.models.items.base import ItemRepresentation


class CrossViewAttention(nn.Module):
    """Multi-head attention whose queries come from one view and keys/values from the other.

    ``softmax(Q Kᵀ / √h) V`` per head (h = d / heads; Q, K, V without bias), heads concatenated
    and projected by ``Linear(d, d)`` (release ``Multi_CrossAttention``). Position t attends to
    the real positions ≤ t when ``causal`` (padrec's default, so every position of a window
    can be trained without seeing its target) or every real position of the window when not
    (the release masks padding keys only), and always to itself; outputs are zeros at
    padding. Weights Xavier-normal, biases PyTorch's default (release ``_init_weights``).

    Args:
        dim: d. heads: number of heads (release 2); must divide d.
        causal: mask the keys after the query position (False = the release's mask).
    """

    def __init__(self, dim: int, heads: int = 2, causal: bool = True) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"cross-attention heads ({heads}) must divide the width {dim}")
        self.heads = heads
        self.causal = causal
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)
        for layer in (self.q, self.k, self.v, self.out):
            nn.init.xavier_normal_(layer.weight)

    def forward(self, query_view: torch.Tensor, key_view: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """query_view, key_view: B×L×d; pad_mask: B×L (True at padding) -> B×L×d."""
        B, L, d = query_view.shape
        h = d // self.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(B, L, self.heads, h).transpose(1, 2)  # B × heads × L × h

        q, k, v = split(self.q(query_view)), split(self.k(key_view)), split(self.v(key_view))
        allowed = ~pad_mask.unsqueeze(1)  # B × 1 × L(key), broadcast to B × L(query) × L(key)
        if self.causal:
            allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=query_view.device).tril()
        allowed = allowed | torch.eye(L, dtype=torch.bool, device=query_view.device)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(h)
        scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
        mixed = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, L, d)
        return self.out(mixed).masked_fill(pad_mask.unsqueeze(-1), 0.0)


class ViewEmbedding(nn.Module):
    """``dropout(√d · v + P[-L:])`` for a view v (B×L×d -> B×L×d): the release's scaling, one
    learned position table shared by both views (right-aligned, as padrec's backbones index
    positions, so the last item always has the same position vector) and dropout, before the
    cross-view attention. Positions N(0, init_std).

    Args:
        dim: d. max_len: the longest history. dropout: the dropout probability.
    """

    def __init__(self, dim: int, max_len: int, dropout: float, init_std: float = 0.02) -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        self.position = nn.Embedding(max_len, dim)
        nn.init.normal_(self.position.weight, 0.0, init_std)
        self.dropout = nn.Dropout(dropout)

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        L = view.shape[1]
        return self.dropout(view * self.scale + self.position.weight[self.position.num_embeddings - L :])


class DualViewEncoder(nn.Module):
    """Items ``[E ; adapter(x)]`` (any (N+1)×2d representation, frozen tables included) ->
    cross-view attention -> one shared backbone per view (module docstring).

    Args:
        items: the dual-view representation (``dim`` = 2d; the first half is the
            collaborative view, the second the semantic view).
        backbone: the shared backbone of width d.
        cross_attention: the release's cross-view attention (``--use_cross_att``).
        heads: its number of heads.
        causal_cross: the causal mask of the cross-view attention (False = the release's).
        embed: applied to each view before the cross-view attention (the release's order; the
            backbone must then add no positions, scaling or input dropout of its own).
    """

    def __init__(
        self,
        items: ItemRepresentation,
        backbone: Backbone,
        cross_attention: bool = True,
        heads: int = 2,
        causal_cross: bool = True,
        embed: ViewEmbedding | None = None,
    ):
        super().__init__()
        self.items = items
        self.embed = embed
        self.backbone = backbone
        self.view_dim = items.dim // 2
        self.llm2id = CrossViewAttention(self.view_dim, heads, causal_cross) if cross_attention else None
        self.id2llm = CrossViewAttention(self.view_dim, heads, causal_cross) if cross_attention else None

    def views(self, histories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids -> the backbone inputs of the collaborative and the semantic view, B×L×d each."""
        both = self.items.history(histories)
        e, m = both[..., : self.view_dim], both[..., self.view_dim :]
        if self.embed is not None:
            e, m = self.embed(e), self.embed(m)
        if self.llm2id is None:
            return e, m
        pad = histories == 0
        return self.llm2id(m, e, pad), self.id2llm(e, m, pad)

    def encode(self, histories: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded ids -> (B, L, 2d) ``[backbone(ẽ) ; backbone(m̃)]``."""
        e, m = self.views(histories)
        pad = histories == 0
        out = self.backbone(torch.cat([e, m]), torch.cat([pad, pad]))  # both views in one pass
        return torch.cat(out.chunk(2), dim=-1)

    def user_vector(self, histories: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, 2d): the output at the last position."""
        return self.encode(histories)[:, -1]
