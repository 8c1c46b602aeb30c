"""LLM-ESR's two item views as one (N+1)×2d representation: ``[E_i ; adapter(x_i)]``.

- Collaborative view E: a trainable ID table initialised with ``PCA(n_components=d)`` of the
  item text embeddings (the release's ``pca64_itm_emb_np.pkl``; row 0 zeros).
- Semantic view: the frozen text embedding x_i through the release's adapter
  ``Linear(D, D/2) → Linear(D/2, d)`` (no activation; Xavier-normal weights, PyTorch's
  default biases, as the release's ``_init_weights`` leaves 1-d parameters alone).

The method splits history vectors into their two halves, runs each view through the shared
backbone and scores candidates against the whole 2d vector, so a score is the sum of a
collaborative and a semantic dot product. Frozen for serving, the representation is one
(N+1)×2d table whose halves are the two views; its text adapter gives new items their
semantic half from text (collaborative half zero).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from padrec.models.items.adapters import TableLookup, TextAdapter
from padrec.models.items.base import ItemRepresentation
from padrec.models.items.faerec import pca_table
from padrec.models.items.id import IDEmbedding


class SemanticAdapter(nn.Sequential):
    """``Linear(D, D/2) → Linear(D/2, d)`` (D/2 rounded down, at least 1): text x -> S×d."""

    def __init__(self, in_dim: int, dim: int) -> None:
        hidden = max(1, in_dim // 2)
        super().__init__(nn.Linear(in_dim, hidden), nn.Linear(hidden, dim))
        for layer in self:
            nn.init.xavier_normal_(layer.weight)


class DualViewItems(ItemRepresentation):
    """Collaborative ⊕ semantic item vectors, (N+1)×2d (module docstring).

    Args:
        text_embeddings: (N+1)×D frozen text embeddings, row 0 zeros (a non-persistent buffer).
        dim: d, the width of each view (``self.dim`` is 2d).
        pca_init: initialise E from PCA of the text (release: yes); else N(0, init_std).
        init_std: std of the normal initialisation (and of PCA's missing columns).
    """

    text: torch.Tensor

    def __init__(self, text_embeddings: torch.Tensor, dim: int, pca_init: bool = True, init_std: float = 0.02) -> None:
        super().__init__()
        self.num_items, self.view_dim, self.dim = text_embeddings.shape[0] - 1, dim, 2 * dim
        self.register_buffer("text", text_embeddings.detach().float(), persistent=False)
        self.ids = IDEmbedding(self.num_items, dim, init_std=init_std)
        if pca_init:
            with torch.no_grad():
                self.ids.embedding.weight.copy_(pca_table(self.text, dim, init_std))
        self.adapter = SemanticAdapter(text_embeddings.shape[1], dim)

    def id_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """E[ids]: S -> S×d."""
        return self.ids(ids)

    def llm_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """adapter(x_ids): S -> S×d, zeros where ids == 0."""
        return self.adapter(self.text[ids]).masked_fill((ids == 0).unsqueeze(-1), 0.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> S×2d ``[E ; adapter(x)]`` (both sides)."""
        return torch.cat([self.id_vectors(ids), self.llm_vectors(ids)], dim=-1)

    def all(self) -> torch.Tensor:
        """(N+1)×2d vectors of every id (row 0 zeros)."""
        llm = self.adapter(self.text)
        llm = torch.cat([llm.new_zeros(1, self.view_dim), llm[1:]])
        return torch.cat([self.ids.all(), llm], dim=-1)

    def text_adapter(self) -> DualViewAdapter:
        """New items' vectors from text: the trained E row (zeros for new items) ⊕ adapter(x)."""
        return DualViewAdapter(copy.deepcopy(self.adapter), TableLookup(self.ids.all()))


class DualViewAdapter(TextAdapter):
    """``[E_i ; adapter(x)]`` from raw text (M, D) and ids (M,), with E a :class:`TableLookup`."""

    def __init__(self, adapter: nn.Module, ids: TableLookup) -> None:
        super().__init__()
        self.adapter, self.ids = adapter, ids

    def forward(self, text: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.cat([self.ids(ids), self.adapter(text.float())], dim=-1)
        return v, v
