"""Frozen item text through a trainable MLP (``text``): PAD's f_MLP, MoRec's item encoder."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from padrec.models.items.adapters import MLPAdapter
from padrec.models.items.base import (
    ACTIVATIONS,
    ITEM_REPRESENTATIONS,
    ItemContext,
    ItemRepresentation,
    init_linear,
)


def text_norm_stats(
    text: torch.Tensor, how: Literal["none", "center", "standardize"]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, scale), each (D,), of an (N+1)×D text matrix from its item rows 1..N, such that
    the normalised rows are ``(x - shift) * scale``.

    ``none``: shift 0, scale 1; ``center``: shift = mean item row, scale 1; ``standardize``:
    also scale = 1 / standard deviation per dimension, with 0 for dimensions whose deviation is
    below 1e-4 of the largest (constant over the catalogue).
    """
    if how not in ("none", "center", "standardize"):
        raise ValueError(f"unknown text input_norm {how!r}; expected none, center or standardize")
    dim = text.shape[1]
    if how == "none":
        return torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64)
    items = text[1:].double()
    shift = items.mean(0)
    if how == "center":
        return shift, torch.ones(dim, dtype=torch.float64)
    std = items.std(0)
    scale = torch.where(std > 1e-4 * std.max(), 1.0 / std.clamp_min(1e-30), torch.zeros_like(std))
    return shift, scale


def normalize_text(text: torch.Tensor, how: Literal["none", "center", "standardize"]) -> torch.Tensor:
    """Rescale a frozen (N+1)×D text matrix with statistics of its item rows 1..N
    (:func:`text_norm_stats`); row 0 stays zeros. Returns a new (N+1)×D tensor (``none``:
    ``text`` itself)."""
    shift, scale = text_norm_stats(text, how)
    if how == "none":
        return text
    out = (text[1:].double() - shift) * scale
    return torch.cat([text.new_zeros(1, text.shape[1]), out.to(text.dtype)])


@dataclass
class TextItemsConfig:
    """Settings of the ``text`` representation (defaults: padrec's PAD LLM expert, a linear
    adapter over standardized text; the release uses 4 hidden layers and a final GELU).

    Attributes:
        mlp_layers: hidden ``[Dropout, Linear d→d, act]`` blocks after ``Linear D→d``.
        dropout: dropout inside the MLP.
        activation: ``gelu``, ``relu``, ``tanh`` or ``identity``.
        final_activation: apply the activation after the last Linear too.
        input_norm: ``none``, ``center`` or ``standardize`` (see :func:`normalize_text`).
        init: ``xavier_normal`` (release) or PyTorch's ``default``.
    """

    mlp_layers: int = 0
    dropout: float = 0.1
    activation: Literal["gelu", "relu", "tanh", "identity"] = "gelu"
    final_activation: bool = False
    input_norm: Literal["none", "center", "standardize"] = "standardize"
    init: Literal["xavier_normal", "default"] = "xavier_normal"

    def __post_init__(self) -> None:
        if self.mlp_layers < 0:
            raise ValueError(f"mlp_layers must be >= 0, got {self.mlp_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def mlp_kwargs(self) -> dict:
        """Keyword arguments of :class:`TextMLP`."""
        return {
            "num_hidden_layers": self.mlp_layers,
            "dropout": self.dropout,
            "activation": self.activation,
            "final_activation": self.final_activation,
            "input_norm": self.input_norm,
            "init": self.init,
        }


@ITEM_REPRESENTATIONS.register("text")
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
        raw = text_embeddings.detach().float()
        self.register_buffer("text", normalize_text(raw, input_norm), persistent=False)
        shift, scale = text_norm_stats(raw, input_norm)
        # kept for text_adapter (new items at serving time); rebuilt from the text, so not saved
        self.register_buffer("text_shift", shift.float(), persistent=False)
        self.register_buffer("text_scale", scale.float(), persistent=False)
        self.num_items = text_embeddings.shape[0] - 1
        self.dim = dim
        self.zero_padding = zero_padding
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Linear(text_embeddings.shape[1], dim), act()]
        for _ in range(num_hidden_layers):
            layers += [nn.Dropout(dropout), nn.Linear(dim, dim), act()]
        if not final_activation:
            layers.pop()
        self.mlp = nn.Sequential(*layers)
        init_linear(self.mlp, init)

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

    def text_adapter(self) -> MLPAdapter:
        """The MLP with this matrix's normalisation, for text embeddings of new items."""
        return MLPAdapter(copy.deepcopy(self.mlp), self.text_shift, self.text_scale)

    config_class = TextItemsConfig
    needs_text = True

    @classmethod
    def from_config(cls, config: TextItemsConfig, context: ItemContext) -> TextMLP:
        return cls(context.text("text"), context.dim, **config.mlp_kwargs())
