"""Item representations: modules mapping item ids to d-dimensional vectors.

Every representation takes ids of any shape S (0 = padding, 1..N = items) and returns S×d
(``forward``), and gives the whole catalogue as an (N+1)×d matrix (``all``) for full
ranking. Row 0 is zeros unless a representation is asked to reproduce a release that
pushes padding through its layers (``zero_padding=False``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def _init_linear(module: nn.Module, init: str) -> None:
    """Xavier-normal weights and zero biases for every Linear in ``module`` (PAD release);
    ``default`` keeps PyTorch's initialisation."""
    if init == "default":
        return
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ItemRepresentation(nn.Module):
    """Base class: ``forward(ids: S) -> S×dim`` and ``all() -> (num_items+1)×dim``.

    Attributes:
        num_items: N; valid ids are 0 (padding) .. N.
        dim: d, the width of the vectors returned.
    """

    num_items: int
    dim: int

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def all(self) -> torch.Tensor:  # pragma: no cover
        """Vectors of every id 0..N, shape (N+1)×dim, for scoring the whole catalogue."""
        raise NotImplementedError


class IDEmbedding(ItemRepresentation):
    """A learned table ``nn.Embedding(N+1, d, padding_idx=0)``; row 0 is zeros and gets no gradient.

    Args:
        num_items: N.
        dim: d.
        init: ``normal`` = N(0, init_std) (RecBole) or ``xavier_normal`` (PAD release).
        init_std: standard deviation for ``init='normal'``.
    """

    def __init__(
        self,
        num_items: int,
        dim: int,
        init: Literal["normal", "xavier_normal"] = "normal",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.dim = dim
        self.embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)
        if init == "normal":
            nn.init.normal_(self.embedding.weight, 0.0, init_std)
        elif init == "xavier_normal":
            nn.init.xavier_normal_(self.embedding.weight)
        else:
            raise ValueError(f"unknown init {init!r}; expected 'normal' or 'xavier_normal'")
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S int64 -> S×d."""
        return self.embedding(ids)

    def all(self) -> torch.Tensor:
        """(N+1)×d, the table itself (row 0 zeros)."""
        return self.embedding.weight


def normalize_text(text: torch.Tensor, how: Literal["none", "center", "standardize"]) -> torch.Tensor:
    """Rescale a frozen (N+1)×D text matrix with statistics of its item rows 1..N.

    ``none`` returns it unchanged; ``center`` subtracts the mean item row; ``standardize``
    also divides every dimension by its standard deviation, mapping dimensions whose deviation
    is below 1e-4 of the largest (constant over the catalogue) to 0. Row 0 stays zeros.
    Returns a new (N+1)×D tensor.
    """
    if how == "none":
        return text
    if how not in ("center", "standardize"):
        raise ValueError(f"unknown text input_norm {how!r}; expected none, center or standardize")
    items = text[1:].double()
    out = items - items.mean(0)
    if how == "standardize":
        std = items.std(0)
        scale = torch.where(std > 1e-4 * std.max(), 1.0 / std.clamp_min(1e-30), torch.zeros_like(std))
        out = out * scale
    return torch.cat([text.new_zeros(1, text.shape[1]), out.to(text.dtype)])


class TextMLP(ItemRepresentation):
    """Frozen item text embeddings through a trainable MLP (PAD's f_MLP).

    ``Linear(D, d) -> act``, then ``num_hidden_layers × [Dropout, Linear(d, d), act]``; the
    PAD release uses GELU and 4 hidden layers with dropout 0.1. ``final_activation=False``
    leaves the last Linear without its activation, so item vectors can point anywhere (a
    final GELU keeps every coordinate above -0.17, which gives all items a shared direction
    that full-softmax training turns into a popularity score).

    ``input_norm`` rescales the frozen text once, from statistics of rows 1..N: ``center``
    subtracts the mean item vector (the common component every sentence embedding shares);
    ``standardize`` also divides each dimension by its standard deviation, so unit-norm
    embeddings (MiniLM: coordinates of about 0.05) reach the MLP at unit scale. Dimensions
    that are constant over the catalogue (MiniLM has two) are set to 0 rather than amplified.

    The text matrix is a non-persistent buffer: it follows ``.to(device)`` but is left out
    of ``state_dict``, so checkpoints hold only the MLP (the text is a cached artefact that
    can be hundreds of MB, and several experts share one copy); rebuilding from a
    checkpoint needs the same text embeddings passed in again. It never receives gradients.

    Args:
        text_embeddings: (N+1)×D float tensor, row 0 = padding.
        dim: d.
        num_hidden_layers: k, the ``[Dropout, Linear(d, d), act]`` layers after the input one.
        dropout: dropout before each hidden Linear.
        activation: ``gelu`` (release), ``relu``, ``tanh`` or ``identity``.
        zero_padding: return zeros for id 0 (default); False pushes the padding text row
            through the MLP like any item, as the release does.
        init: ``xavier_normal`` weights and zero biases (release) or PyTorch ``default``.
        final_activation: apply ``act`` after the last Linear too (release: True).
        input_norm: ``none`` (release), ``center`` or ``standardize``.
    """

    text: torch.Tensor

    def __init__(
        self,
        text_embeddings: torch.Tensor,
        dim: int,
        num_hidden_layers: int = 4,
        dropout: float = 0.1,
        activation: Literal["gelu", "relu", "tanh", "identity"] = "gelu",
        zero_padding: bool = True,
        init: Literal["xavier_normal", "default"] = "xavier_normal",
        final_activation: bool = True,
        input_norm: Literal["none", "center", "standardize"] = "none",
    ) -> None:
        super().__init__()
        if text_embeddings.dim() != 2:
            raise ValueError(f"text_embeddings must be (N+1)×D, got shape {tuple(text_embeddings.shape)}")
        self.register_buffer("text", normalize_text(text_embeddings.detach().float(), input_norm), persistent=False)
        self.num_items = text_embeddings.shape[0] - 1
        self.dim = dim
        self.zero_padding = zero_padding
        act = _ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Linear(text_embeddings.shape[1], dim), act()]
        for _ in range(num_hidden_layers):
            layers += [nn.Dropout(dropout), nn.Linear(dim, dim), act()]
        if not final_activation:
            layers.pop()
        self.mlp = nn.Sequential(*layers)
        _init_linear(self.mlp, init)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S int64 -> S×d (zeros where ids == 0 if ``zero_padding``)."""
        out = self.mlp(self.text[ids])
        if self.zero_padding:
            out = out.masked_fill((ids == 0).unsqueeze(-1), 0.0)
        return out

    def all(self) -> torch.Tensor:
        """(N+1)×d for every id."""
        out = self.mlp(self.text)
        if self.zero_padding:
            out = torch.cat([out.new_zeros(1, self.dim), out[1:]])
        return out


class ConcatFusion(ItemRepresentation):
    """PAD's alignment-expert item: ``act(Linear(Dropout([first(ids); second(ids)])))``.

    In the release ``first`` is the ID table and ``second`` the TextMLP, with GELU and
    dropout 0.1. ``pair(ids)`` returns both sides so an alignment loss can read them and
    ``fuse(a, b, ids)`` can combine the same tensors without computing them twice (dropout
    inside the sides would otherwise draw new masks).

    Args:
        first, second: item representations over the same N items.
        dim: d, output width.
        dropout: dropout on the concatenation.
        activation: ``gelu`` (release), ``relu``, ``tanh`` or ``identity``.
        zero_padding: zeros for id 0 (default); False = the release's behaviour.
        init: ``xavier_normal`` (release), ``default`` (PyTorch's), or ``passthrough``: the
            Linear starts as ``[I ; 0]`` (weight 1 from each coordinate of ``first`` to the
            same output coordinate, 0 from ``second``, zero bias), so the fused vector starts
            as ``act(first(ids))`` and a backbone copied from ``first``'s model sees the
            vectors it was trained on (needs ``first.dim == dim``).
    """

    def __init__(
        self,
        first: ItemRepresentation,
        second: ItemRepresentation,
        dim: int,
        dropout: float = 0.1,
        activation: Literal["gelu", "relu", "tanh", "identity"] = "gelu",
        zero_padding: bool = True,
        init: Literal["xavier_normal", "default", "passthrough"] = "xavier_normal",
    ) -> None:
        super().__init__()
        if first.num_items != second.num_items:
            raise ValueError(f"first has {first.num_items} items, second {second.num_items}")
        self.first = first
        self.second = second
        self.num_items = first.num_items
        self.dim = dim
        self.zero_padding = zero_padding
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(first.dim + second.dim, dim)
        self.activation = _ACTIVATIONS[activation]()
        if init == "passthrough":
            if first.dim != dim:
                raise ValueError(f"passthrough init needs first.dim == dim, got {first.dim} and {dim}")
            nn.init.eye_(self.linear.weight)  # ones on the diagonal of the first d×d block
            nn.init.zeros_(self.linear.bias)
        elif init in ("xavier_normal", "default"):
            _init_linear(self.linear, init)
        else:
            raise ValueError(f"init must be xavier_normal, default or passthrough, got {init!r}")

    def pair(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids: S -> (first(ids): S×d1, second(ids): S×d2)."""
        return self.first(ids), self.second(ids)

    def fuse(
        self, first_vecs: torch.Tensor, second_vecs: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """S×d1, S×d2 (from ``pair``) -> S×d; given ``ids`` (S) and ``zero_padding``, rows of
        id 0 are zeros."""
        out = self.activation(self.linear(self.dropout(torch.cat([first_vecs, second_vecs], dim=-1))))
        if ids is not None and self.zero_padding:
            out = out.masked_fill((ids == 0).unsqueeze(-1), 0.0)
        return out

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S int64 -> S×d (zeros where ids == 0 if ``zero_padding``)."""
        return self.fuse(*self.pair(ids), ids)

    def all(self) -> torch.Tensor:
        """(N+1)×d for every id."""
        out = self.fuse(self.first.all(), self.second.all())
        if self.zero_padding:
            out = torch.cat([out.new_zeros(1, self.dim), out[1:]])
        return out
