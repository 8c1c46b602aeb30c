"""DisCo's item views and dual-side attentive network, made causal for sequential histories.

- Views of an item i: the tabular (ID) vector ``E_i`` (d) and the semantic vector ``x_i``, the
  frozen text embedding (D) after padrec's input normalisation. Each is split in two chunks
  (official ``torch.chunk(·, 2, -1)``): ``E = [E^in ; E^co]``, ``x = [x^in ; x^co]``.
- Dual-side attention (official ``innerdomain_aggregation`` / ``interactive_aggregation``), with
  ``attn(q, K, V) = Σ_j softmax_j(q · k_j) v_j`` (no scaling, as the official code):
  intra-domain  ``p^C_in = attn(Q_T x^in_t, K_C E^in_j, V_C E^in_j)``,
                ``p^T_in = attn(Q_C E^in_t, K_T x^in_j, V_T x^in_j)``;
  inter-domain  ``p^C_co = attn(Q'_T x^co_t, K'_T x^co_j, V'_C E^co_j)``,
                ``p^T_co = attn(Q'_C E^co_t, K'_C E^co_j, V'_T x^co_j)``
  (the attention weights of one space applied to the other's values). Every projection is a
  Linear from the chunk to d. DisCo's query is the CTR target item; here it is the item at
  position t and j runs over the non-padding positions ≤ t, so each pattern vector describes
  the history so far and scores stay one dot product with a candidate table.
- Candidates: ``c_i = W_c [E_i ; x_i] + b_c`` (zeros for padding).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from padrec.models.items.adapters import TextAdapter
from padrec.models.items.base import ItemRepresentation
from padrec.models.items.id import IDEmbedding
from padrec.models.items.precomputed import PrecomputedItems
from padrec.models.items.text import normalize_text, text_norm_stats

PATTERNS = ("c_intra", "t_intra", "c_inter", "t_inter")
# masked attention logits (the official code's -2**32 + 1; finite, so all-padding rows stay finite)
_MASKED = -(2.0**32) + 1


def halves(width: int) -> tuple[int, int]:
    """Widths of ``torch.chunk(v, 2, -1)`` of a ``width``-wide vector."""
    first = (width + 1) // 2
    return first, width - first


class DualSideAttention(nn.Module):
    """Four causal pattern vectors per position from the ID and text views (module docstring).

    Args:
        dim: d (the ID width and the pattern width).
        text_dim: D, the width of the text view.
    """

    def __init__(self, dim: int, text_dim: int) -> None:
        super().__init__()
        c_in, c_co = halves(dim)
        t_in, t_co = halves(text_dim)
        widths = {"c_q": c_in, "c_k": c_in, "c_v": c_in, "t_q": t_in, "t_k": t_in, "t_v": t_in}
        widths |= {"c_q_co": c_co, "c_k_co": c_co, "c_v_co": c_co, "t_q_co": t_co, "t_k_co": t_co, "t_v_co": t_co}
        self.proj = nn.ModuleDict({name: nn.Linear(w, dim) for name, w in widths.items()})

    @staticmethod
    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """q, k, v: (B, L, d); allowed: (B, L, L) bool (query t may read key j) -> (B, L, d)."""
        scores = torch.einsum("bld,bmd->blm", q, k).masked_fill(~allowed, _MASKED)
        return torch.softmax(scores, dim=-1) @ v

    def forward(
        self, ids_view: torch.Tensor, text_view: torch.Tensor, pad_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """ids_view: (B, L, d) E of the history; text_view: (B, L, D) x of the history;
        pad_mask: (B, L) True at padding -> ``{pattern: (B, L, d)}`` for :data:`PATTERNS`,
        zeros at padding positions."""
        p = self.proj
        e_in, e_co = ids_view.chunk(2, dim=-1)
        x_in, x_co = text_view.chunk(2, dim=-1)
        length = pad_mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=pad_mask.device).tril()
        allowed = causal.unsqueeze(0) & ~pad_mask.unsqueeze(1)  # B × L(query) × L(key)
        out = {
            "c_intra": self.attend(p["t_q"](x_in), p["c_k"](e_in), p["c_v"](e_in), allowed),
            "t_intra": self.attend(p["c_q"](e_in), p["t_k"](x_in), p["t_v"](x_in), allowed),
            "c_inter": self.attend(p["t_q_co"](x_co), p["t_k_co"](x_co), p["c_v_co"](e_co), allowed),
            "t_inter": self.attend(p["c_q_co"](e_co), p["c_k_co"](e_co), p["t_v_co"](x_co), allowed),
        }
        keep = (~pad_mask).unsqueeze(-1).to(ids_view.dtype)
        return {name: v * keep for name, v in out.items()}


class DisCoItems(ItemRepresentation):
    """DisCo's item views: the ID table E and the normalised frozen text x, and the candidate
    vectors ``W_c [E ; x]`` (module docstring). History side (``history``): E, what the
    backbone reads; ``views(ids)`` gives both views for the attention network.

    Args:
        text_embeddings: (N+1)×D frozen text, row 0 zeros.
        dim: d.
        input_norm: ``none``, ``center`` or ``standardize`` (see ``normalize_text``).
        init_std: std of E's normal initialisation.
    """

    two_sided = True
    text: torch.Tensor

    def __init__(
        self, text_embeddings: torch.Tensor, dim: int, input_norm: str = "standardize", init_std: float = 0.02
    ) -> None:
        super().__init__()
        raw = text_embeddings.detach().float()
        self.num_items, self.dim = raw.shape[0] - 1, dim
        self.register_buffer("text", normalize_text(raw, input_norm), persistent=False)
        shift, scale = text_norm_stats(raw, input_norm)
        self.register_buffer("text_shift", shift.float(), persistent=False)
        self.register_buffer("text_scale", scale.float(), persistent=False)
        self.ids = IDEmbedding(self.num_items, dim, init_std=init_std)
        self.candidate = nn.Linear(dim + raw.shape[1], dim)

    @property
    def text_dim(self) -> int:
        """D."""
        return self.text.shape[1]

    def views(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids: S -> (E[ids]: S×d, x[ids]: S×D); rows of id 0 are zeros."""
        return self.ids(ids), self.text[ids]

    def fuse(self, id_vecs: torch.Tensor, text_vecs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``W_c [E ; x] + b_c`` from S×d and S×D views -> S×d, zeros where ids == 0."""
        out = self.candidate(torch.cat([id_vecs, text_vecs], dim=-1))
        return out.masked_fill((ids == 0).unsqueeze(-1), 0.0)

    def history(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> E[ids], S×d."""
        return self.ids(ids)

    def candidates(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> candidate vectors, S×d."""
        return self.fuse(*self.views(ids), ids)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> candidate vectors, S×d."""
        return self.candidates(ids)

    def all(self) -> torch.Tensor:
        """(N+1)×d candidate vectors (row 0 zeros)."""
        return self.candidates(torch.arange(self.num_items + 1, device=self.text.device))

    def all_history(self) -> torch.Tensor:
        """(N+1)×d history vectors: the ID table."""
        return self.ids.all()

    def text_adapter(self) -> DisCoAdapter:
        """Raw text of items -> (candidate, history) vectors; E is the trained row of existing
        items and zeros for new ones."""
        return DisCoAdapter(self.text_shift, self.text_scale, copy.deepcopy(self.candidate), self.ids.all())

    def frozen(self) -> FrozenDisCoItems:
        """The serving form: candidate, E and x tables as persistent buffers. Call in eval mode."""
        with torch.no_grad():
            return FrozenDisCoItems(self.all(), self.ids.all(), self.text, self.text_adapter())


class DisCoAdapter(TextAdapter):
    """DisCo's text path for new items: ``x = (text − shift) · scale``, candidates
    ``W_c [E ; x] + b_c``, history E (the trained row; zeros for ids beyond the trained table).

    Args:
        shift, scale: (D,) the text normalisation. candidate: the candidate Linear.
        id_table: (N+1)×d trained E.
    """

    def __init__(self, shift: torch.Tensor, scale: torch.Tensor, candidate: nn.Linear, id_table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("shift", shift.detach().clone().float())
        self.register_buffer("scale", scale.detach().clone().float())
        self.register_buffer("id_table", id_table.detach().clone())
        self.candidate = candidate

    def normalise(self, text: torch.Tensor) -> torch.Tensor:
        """(M, D) raw text -> (M, D) x."""
        return (text.float() - self.shift) * self.scale

    def forward(self, text: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        known = ids < self.id_table.shape[0]
        e = self.id_table[ids.clamp_max(self.id_table.shape[0] - 1)] * known.unsqueeze(-1).to(self.id_table.dtype)
        cand = self.candidate(torch.cat([e, self.normalise(text)], dim=-1))
        return cand, e


class FrozenDisCoItems(PrecomputedItems):
    """Serving tables of :class:`DisCoItems`: ``table`` (candidates), ``history_table`` (E) and
    ``text_table`` (x), all saved with the serving weights; ``views`` are lookups."""

    two_sided = True

    def __init__(
        self, table: torch.Tensor, id_table: torch.Tensor, text_table: torch.Tensor, adapter: DisCoAdapter
    ) -> None:
        super().__init__(table, id_table, adapter)
        self.register_buffer("text_table", text_table.detach().clone())

    @property
    def text_dim(self) -> int:
        """D."""
        return self.text_table.shape[1]

    def views(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids: S -> (E[ids], x[ids])."""
        return self.history_table[ids], self.text_table[ids]

    @torch.no_grad()
    def set_items(self, ids: torch.Tensor, text: torch.Tensor) -> None:
        """As :meth:`PrecomputedItems.set_items`, also writing the items' x rows."""
        super().set_items(ids, text)
        if self.adapter is not None:
            ids = ids.to(self.table.device)
            self.text_table[ids] = self.adapter.normalise(text.to(self.table.device)).to(self.text_table.dtype)
