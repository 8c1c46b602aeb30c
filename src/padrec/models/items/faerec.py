"""FAERec's two-sided item representation (``faerec_gated``): gated ID ⊕ text history items,
ID-table candidates in training and ``LayerNorm(E + MLP(x))`` candidates at inference.

- Projection: ``MLP(x) = W_b · Dropout(GELU(W_a x + b_a)) + b_b`` (D → D/2 → d).
- ID table E, initialised from ``PCA(n_components=d)`` of the text rows 1..N (raw
  projections; row 0 stays zero).
- History (per position t, item s_t): ``u_t = Dropout(E[s_t] + P_t)``,
  ``v_t = Dropout(MLP(x_{s_t}) + P_t)``, ``g_t = σ(W2 · Dropout(GELU(W1 [u_t; v_t] + b1)) + b2)``
  with b2 = 0 at start, ``h_t = LayerNorm(g_t ⊙ u_t + (1 − g_t) ⊙ v_t)``; rows of padding
  ids are zeros. P_t is a learned, right-aligned position table (the most recent item gets
  the last row), present only when built with ``max_len > 0``.
- Candidates: E while ``self.training``; ``LayerNorm_c(E + MLP(x))`` in eval mode, with its own
  LayerNorm, which never receives a gradient (training candidates are E) and so stays the
  plain per-row standardisation it is initialised as.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from padrec.models.items.adapters import TableLookup, TextAdapter
from padrec.models.items.base import ITEM_REPRESENTATIONS, ItemContext, ItemRepresentation
from padrec.models.items.id import IDEmbedding
from padrec.models.items.precomputed import PrecomputedItems


class ProjectionMLP(nn.Module):
    """``W_b · Dropout(GELU(W_a x + b_a)) + b_b``: D → D/2 → d (D/2 rounded down, at least 1)."""

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.3) -> None:
        super().__init__()
        hidden = max(1, in_dim // 2)
        self.a = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.b = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: S×D -> S×d."""
        return self.b(self.dropout(self.act(self.a(x))))

    def rows(self, text: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``MLP(text[ids])`` for ids of any shape S -> S×d, zeros where ids == 0.

        The same values as ``forward(text[ids])`` (dropout drawn per slot as there), but the
        wide first layer runs once per distinct id and padding slots are skipped: a batch
        of B×L history slots mostly repeats items or is padding.
        """
        flat = ids.reshape(-1)
        real = flat.nonzero().squeeze(1)
        uniq, inverse = torch.unique(flat.index_select(0, real), return_inverse=True)
        hidden = self.act(self.a(text.index_select(0, uniq)))  # U×D/2, one row per distinct id
        out = self.b(self.dropout(hidden.index_select(0, inverse)))  # R×d, per-slot dropout
        full = out.new_zeros(flat.shape[0], out.shape[-1]).index_copy(0, real, out)
        return full.view(*ids.shape, out.shape[-1])


def pca_table(text: torch.Tensor, dim: int, init_std: float = 0.02, seed: int = 0) -> torch.Tensor:
    """An (N+1)×d ID table from ``sklearn PCA(n_components=d)`` of text rows 1..N.

    Row 0 is zero. When the text has fewer than d usable components (D < d or N < d) the
    remaining columns are N(0, init_std); a text without variance (all rows equal, e.g. the
    zero placeholder a serving load builds with) gives a plain N(0, init_std) table.
    """
    from sklearn.decomposition import PCA

    gen = torch.Generator().manual_seed(seed)
    n = text.shape[0] - 1
    out = torch.randn(n + 1, dim, generator=gen) * init_std
    items = text[1:].double().cpu().numpy()
    k = min(dim, n, items.shape[1])
    if k >= 1 and float(np.var(items, axis=0).sum()) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # degenerate trailing components
            proj = PCA(n_components=k, svd_solver="full").fit_transform(items)
        out[1:, :k] = torch.from_numpy(proj).float()
    out[0] = 0.0
    return out


class GatedFusion(nn.Module):
    """Per-position gate between the ID and text views of history items (module docstring).

    Args:
        dim: d.
        max_len: rows of the position table P (0 = no P).
        dropout: dropout on u_t and v_t.
        gate_dropout: dropout inside the gate MLP.
        gating: False = the "without gating fusion" ablation, g_t = 1/2 fixed, so
            h_t = LayerNorm((u_t + v_t) / 2) (= LayerNorm(u_t + v_t) up to LayerNorm's eps).
        init_std: std of P's normal initialisation.
    """

    def __init__(
        self,
        dim: int,
        max_len: int = 0,
        dropout: float = 0.5,
        gate_dropout: float = 0.1,
        gating: bool = True,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.dim, self.max_len, self.gating = dim, max_len, gating
        self.position = nn.Embedding(max_len, dim) if max_len > 0 else None
        if self.position is not None:
            nn.init.normal_(self.position.weight, 0.0, init_std)
        self.dropout = nn.Dropout(dropout)
        self.w1 = nn.Linear(2 * dim, 2 * dim)
        self.act = nn.GELU()
        self.gate_dropout = nn.Dropout(gate_dropout)
        self.w2 = nn.Linear(2 * dim, dim)
        nn.init.zeros_(self.w2.bias)  # b2 = 0 at start
        self.norm = nn.LayerNorm(dim)

    def gate(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """u, v: S×d -> g: S×d in (0, 1) (1/2 everywhere without gating)."""
        if not self.gating:
            return torch.full_like(u, 0.5)
        return torch.sigmoid(self.w2(self.gate_dropout(self.act(self.w1(torch.cat([u, v], dim=-1))))))

    def forward(self, id_vecs: torch.Tensor, llm_vecs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """id_vecs = E[ids], llm_vecs = MLP(x_ids): S×d; ids: S (B×L when P is used) ->
        h: S×d, zeros where ids == 0."""
        if self.position is not None:
            if ids.dim() != 2 or ids.shape[1] > self.max_len:
                raise ValueError(f"positions need (B, L) histories with L <= {self.max_len}, got {tuple(ids.shape)}")
            pos = self.position.weight[self.max_len - ids.shape[1] :]  # L×d, right-aligned
            id_vecs, llm_vecs = id_vecs + pos, llm_vecs + pos
        u, v = self.dropout(id_vecs), self.dropout(llm_vecs)
        g = self.gate(u, v)
        h = self.norm(g * u + (1 - g) * v)
        return h.masked_fill((ids == 0).unsqueeze(-1), 0.0)


@dataclass
class FAERecItemsConfig:
    """Settings of ``faerec_gated`` in other methods (the ``faerec`` method sets them from its
    own config, adding the position table P where the spec has one).

    Attributes:
        mlp_dropout: dropout inside the projection MLP (spec 0.3).
        pca_init: initialise E from PCA of the text (spec: yes); False = N(0, init_std).
        dropout: dropout on u_t and v_t (the spec gives no rate).
        gate_dropout: dropout inside the gate MLP (spec 0.1).
        gating: the adaptive gate; False = equal weights (see :class:`GatedFusion`).
    """

    mlp_dropout: float = 0.3
    pca_init: bool = True
    dropout: float = 0.5
    gate_dropout: float = 0.1
    gating: bool = True

    def __post_init__(self) -> None:
        for name in ("mlp_dropout", "dropout", "gate_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@ITEM_REPRESENTATIONS.register("faerec_gated")
class FAERecItems(ItemRepresentation):
    """FAERec's item representation (module docstring). Built through the registry it has no
    position table, so its history vectors are a function of the item alone and
    ``all_history()`` is exact (the sequential method freezes it for serving)."""

    config_class = FAERecItemsConfig
    needs_text = True
    two_sided = True
    text: torch.Tensor

    def __init__(
        self,
        text_embeddings: torch.Tensor,
        dim: int,
        config: FAERecItemsConfig | None = None,
        max_len: int = 0,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        cfg = config or FAERecItemsConfig()
        self.num_items, self.dim = text_embeddings.shape[0] - 1, dim
        self.register_buffer("text", text_embeddings.detach().float(), persistent=False)
        self.ids = IDEmbedding(self.num_items, dim, init_std=init_std)
        if cfg.pca_init:
            with torch.no_grad():
                self.ids.embedding.weight.copy_(pca_table(self.text, dim, init_std))
        self.mlp = ProjectionMLP(text_embeddings.shape[1], dim, cfg.mlp_dropout)
        self.fusion = GatedFusion(dim, max_len, cfg.dropout, cfg.gate_dropout, cfg.gating, init_std)
        self.candidate_norm = nn.LayerNorm(dim)

    @classmethod
    def from_config(cls, config: FAERecItemsConfig, context: ItemContext) -> FAERecItems:
        return cls(context.text("faerec_gated"), context.dim, config, 0, context.init_std)

    # --- the two views ---------------------------------------------------------------
    def id_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """E[ids]: S -> S×d."""
        return self.ids(ids)

    def llm_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """MLP(x_ids): S -> S×d (zeros for id 0)."""
        return self.mlp.rows(self.text, ids)

    def llm_all(self) -> torch.Tensor:
        """MLP(x) of every id, (N+1)×d (row 0 zeros)."""
        return self.llm_vectors(torch.arange(self.num_items + 1, device=self.text.device))

    def inference_candidates(self, id_vecs: torch.Tensor, llm_vecs: torch.Tensor) -> torch.Tensor:
        """LayerNorm_c(E + MLP(x)) from S×d views -> S×d."""
        return self.candidate_norm(id_vecs + llm_vecs)

    # --- the two sides ---------------------------------------------------------------
    def history(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) -> (B, L, d) gated fusion h_t (zeros at padding)."""
        return self.fusion(self.id_vectors(ids), self.llm_vectors(ids), ids)

    def candidates(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> S×d: E[ids] in training, LayerNorm_c(E + MLP(x)) in eval mode."""
        e = self.id_vectors(ids)
        if self.training:
            return e
        return self.inference_candidates(e, self.llm_vectors(ids)).masked_fill((ids == 0).unsqueeze(-1), 0.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> S×d candidate vectors."""
        return self.candidates(ids)

    def all(self) -> torch.Tensor:
        """(N+1)×d candidates: E in training, LayerNorm_c(E + MLP(x)) in eval (row 0 zeros)."""
        if self.training:
            return self.ids.all()
        out = self.inference_candidates(self.ids.all(), self.llm_all())
        return torch.cat([out.new_zeros(1, self.dim), out[1:]])

    def all_history(self) -> torch.Tensor:
        """(N+1)×d history vectors of every id (exact only without a position table)."""
        if self.fusion.position is not None:
            raise ValueError("faerec_gated with positions has no per-item history table; use frozen()")
        ids = torch.arange(self.num_items + 1, device=self.text.device)
        return self.fusion(self.ids.all(), self.llm_all(), ids)

    def text_adapter(self) -> FAERecAdapter:
        """Candidates ``LayerNorm_c(E + MLP(x))`` and, without positions, the gate's history
        vectors, from text; E is the trained row of existing items and zeros for new ones."""
        fusion = None if self.fusion.position is not None else copy.deepcopy(self.fusion)
        return FAERecAdapter(
            copy.deepcopy(self.mlp), copy.deepcopy(self.candidate_norm), TableLookup(self.ids.all()), fusion
        )

    def frozen(self) -> FrozenFAERecItems:
        """The eval-mode serving form: candidate, ID and MLP(x) tables plus the gate (no text or
        MLP per request), and the adapter for new items. Call in eval mode."""
        with torch.no_grad():
            adapter = FAERecAdapter(copy.deepcopy(self.mlp), copy.deepcopy(self.candidate_norm))
            return FrozenFAERecItems(self.all(), self.ids.all(), self.llm_all(), self.fusion, adapter)


class FAERecAdapter(TextAdapter):
    """FAERec's text path for new items: ``m = MLP(x)``, candidates ``LayerNorm_c(E + m)`` and
    history vectors ``gate(E, m)`` (when ``fusion`` is given: the registry form, no positions).

    Args:
        mlp: the projection MLP; candidate_norm: LayerNorm_c.
        ids: E as a :class:`TableLookup` (zeros for new items); None = E is zeros (the frozen
            form keeps E in its own table and calls :meth:`llm` and ``candidate_norm`` itself).
        fusion: the gate, or None.
    """

    def __init__(
        self,
        mlp: nn.Module,
        candidate_norm: nn.LayerNorm,
        ids: TableLookup | None = None,
        fusion: GatedFusion | None = None,
    ) -> None:
        super().__init__()
        self.mlp, self.candidate_norm, self.ids, self.fusion = mlp, candidate_norm, ids, fusion

    def llm(self, text: torch.Tensor) -> torch.Tensor:
        """(M, D) raw text -> MLP(x), (M, d)."""
        return self.mlp(text.float())

    def forward(self, text: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.llm(text)
        e = self.ids(ids) if self.ids is not None else torch.zeros_like(m)
        cand = self.candidate_norm(e + m)
        hist = self.fusion(e, m, ids) if self.fusion is not None else cand
        return cand, hist


class FrozenFAERecItems(PrecomputedItems):
    """Serving tables of :class:`FAERecItems`: ``table`` (candidates, (N+1)×d), ``id_table`` (E)
    and ``llm_table`` (MLP(x)); history vectors run the (position-aware) gate on the looked-up
    rows. A :class:`PrecomputedItems`, so ``freeze_item_tables`` leaves it as it is."""

    two_sided = True

    def __init__(
        self,
        table: torch.Tensor,
        id_table: torch.Tensor,
        llm_table: torch.Tensor,
        fusion: GatedFusion,
        adapter: FAERecAdapter | None = None,
    ) -> None:
        super().__init__(table, adapter=adapter)
        self.register_buffer("id_table", id_table.detach().clone())
        self.register_buffer("llm_table", llm_table.detach().clone())
        self.fusion = fusion

    @torch.no_grad()
    def set_items(self, ids: torch.Tensor, text: torch.Tensor) -> None:
        """As :meth:`PrecomputedItems.set_items`: ``MLP(x)`` rows from the text, E kept for
        existing items and zeros for new ones, candidates ``LayerNorm_c(E + MLP(x))``."""
        self.grow(int(ids.max()))
        if self.adapter is None:
            return
        ids = ids.to(self.table.device)
        m = self.adapter.llm(text.to(self.table.device))
        self.llm_table[ids] = m
        self.table[ids] = self.adapter.candidate_norm(self.id_table[ids] + m)

    def history(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) -> (B, L, d) gated history vectors."""
        return self.fusion(self.id_table[ids], self.llm_table[ids], ids)

    def all_history(self) -> torch.Tensor:
        """Not a per-item table when the gate adds positions; the gate's output for each id alone."""
        ids = torch.arange(self.num_items + 1, device=self.table.device)
        if self.fusion.position is not None:
            raise ValueError("positions make FAERec's history depend on the position; use history(ids)")
        return self.fusion(self.id_table, self.llm_table, ids)
