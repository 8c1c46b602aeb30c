"""The backbone interface: item vectors in, sequence vectors out, and what a backbone can do."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from padrec.registry import Registry


@dataclass
class BackboneConfig:
    """Fields every backbone shares.

    Attributes:
        hidden_size: d, the width of item and sequence vectors.
        max_len: L, the longest history the backbone accepts (sizes position tables).
        dropout: dropout probability inside the backbone.
    """

    hidden_size: int = 64
    max_len: int = 50
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.hidden_size <= 16384:
            raise ValueError(f"hidden_size must be between 1 and 16384, got {self.hidden_size}")
        if not 1 <= self.max_len <= 100_000:
            raise ValueError(f"max_len must be between 1 and 100000, got {self.max_len}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class Backbone(nn.Module):
    """A sequence encoder that knows nothing of ids, text, scoring or losses.

    ``forward(x, pad_mask)`` takes item vectors ``x`` (B×L×d) of a left-padded history and
    ``pad_mask`` (B×L, True at padding) and returns B×L×d sequence vectors. The last position
    (index -1) summarises the whole history.

    Capabilities, declared by each backbone class:

    - ``causal``: output t depends only on positions <= t, so every position of a window can
      be trained as a next-item prediction at once (SASRec, GRU4Rec, Caser). A backbone that
      is not causal (an FFT filter over the whole sequence, a last-position pooling) is
      trained on prefix examples with the loss at the last position only
      (``split.train_examples: prefixes``, chosen automatically), so it never sees the future.
    - ``adds_positions``: the backbone adds its own position information (SASRec's learned
      position table); False for order-aware encoders without one (GRU4Rec's recurrence,
      Caser's windows). A method that needs positions for a backbone without them adds them.
    - ``bounded_output``: the output's scale is bounded whatever the scale of the input
      vectors (a final LayerNorm, a tanh-bounded state). A method that hands a trained
      backbone new item vectors can read it to choose how to initialise them.
    """

    config_class: type = BackboneConfig
    causal: bool = True
    adds_positions: bool = False
    bounded_output: bool = True

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


BACKBONES: Registry[Backbone] = Registry("backbone", Backbone)


def backbone_config(name: str, overrides: dict[str, Any], hidden_size: int, max_len: int | None = None) -> Any:
    """The config dataclass of backbone ``name``: ``overrides`` over its defaults, with
    ``hidden_size`` (and ``max_len`` when given) filled in from the method and the split.

    Raises ValueError when ``overrides`` names a field the backbone does not have, gives a
    bad value, or sets ``hidden_size`` / ``max_len`` to something other than the value the
    method and the split fix (two settings that contradict each other).
    """
    from padrec.config import from_dict

    cls = BACKBONES.get(name)
    for key, value in (("hidden_size", hidden_size), ("max_len", max_len)):
        if value is not None and key in overrides and overrides[key] != value:
            source = "method_config.hidden_size" if key == "hidden_size" else "split.max_len"
            raise ValueError(f"backbone_config.{key} = {overrides[key]!r} contradicts {source} = {value!r}")
    data = {"hidden_size": hidden_size, **overrides}
    if max_len is not None:
        data["max_len"] = max_len
    return from_dict(cls.config_class, data, where=f"backbone_config ({name})")


def build_backbone(name: str, overrides: dict[str, Any], hidden_size: int, max_len: int) -> Backbone:
    """Build the registered backbone ``name`` with :func:`backbone_config`."""
    return BACKBONES.get(name)(backbone_config(name, overrides, hidden_size, max_len))


def backbone_class(name: str) -> type[Backbone]:
    """The registered class of backbone ``name`` (its capabilities are class attributes)."""
    return BACKBONES.get(name)


def resolved_backbone_config(name: str, overrides: dict[str, Any], hidden_size: int, max_len: int) -> dict:
    """Every field of the backbone's config as it will be built (for run directories)."""
    return dataclasses.asdict(backbone_config(name, overrides, hidden_size, max_len))
