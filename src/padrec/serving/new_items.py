"""Text embeddings of items added at serving time, made the way the run made its own.

The run's ``serving.json`` records its experiment config; its ``text`` section names the
encoder, its options and the template. :class:`ItemTextEncoder` renders a new item's fields
with that template and encodes the text with that encoder (loaded once, on first use), so a
new item reaches the text adapters exactly as a catalogue item reached the text experts.
Encoders that supply a finished matrix (``precomputed``) cannot encode text: callers then
pass the item's embedding vector themselves.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from padrec.devices import resolve_device
from padrec.text.embeddings import TextConfig, make_encoder, text_config_from_dict
from padrec.text.encoders import TextEncoder
from padrec.text.templates import render_texts


@dataclass
class NewItem:
    """An item given by text: its raw id, title, other text fields (any column the run's
    template names, e.g. ``brand``) and optionally a ready embedding (``dim`` floats)."""

    id: str
    title: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    embedding: list[float] | None = None


class NewItemError(ValueError):
    """A new item cannot be encoded (missing text, wrong embedding size); names the item."""


class ItemTextEncoder:
    """Render and encode new items with a run's text settings.

    Args:
        config: the run's :class:`TextConfig` (None: the run used no text).
        dim: D, the width of the run's text embeddings.
        device: where to run the encoder (``cpu``, ``cuda``, ``auto``).
    """

    def __init__(self, config: TextConfig | None, dim: int, device: str = "cpu") -> None:
        self.config, self.dim, self.device = config, dim, device
        self._encoder: TextEncoder | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_serving_meta(cls, meta: dict[str, Any], device: str = "cpu") -> ItemTextEncoder:
        """From a ``serving.json``: its experiment's ``text`` section and ``text_dim``."""
        dim = int(meta.get("text_dim") or 0)
        section = (meta.get("experiment") or {}).get("text")
        config = text_config_from_dict(section) if dim and section is not None else None
        return cls(config, dim, device)

    @property
    def encodes_text(self) -> bool:
        """True when this run's encoder turns text into vectors (not a precomputed matrix)."""
        if self.config is None:
            return False
        from padrec.text.encoders import ENCODERS

        return ENCODERS.get(self.config.encoder).produces == "texts"

    def describe(self) -> dict[str, Any]:
        """JSON facts: encoder name, template, text width, whether it encodes text."""
        return {
            "encoder": self.config.encoder if self.config else None,
            "template": self.config.template if self.config else None,
            "dim": self.dim,
            "encodes_text": self.encodes_text,
        }

    def texts(self, items: list[NewItem]) -> list[str]:
        """The rendered text of each item; :class:`NewItemError` names items left without text."""
        assert self.config is not None
        columns = sorted({"title"} | {k for it in items for k in it.fields})
        rows = [{c: None for c in columns}]  # row 0: padding
        for it in items:
            rows.append({"title": it.title, **it.fields})
        rendered = render_texts(pd.DataFrame(rows, columns=columns), self.config.template)
        for row, why in sorted(rendered.missing.items()):
            raise NewItemError(f"item '{items[row - 1].id}': no text under the run's template ({why})")
        return rendered.texts[1:]

    def encode(self, items: list[NewItem]) -> torch.Tensor:
        """(M, D) float32 raw text embeddings of ``items`` (given embeddings are used as they are).

        Raises:
            NewItemError: an item has no usable text or embedding, or an embedding of the wrong size.
        """
        out = torch.empty(len(items), self.dim)
        todo: list[int] = []
        for i, it in enumerate(items):
            if it.embedding is not None:
                vec = torch.as_tensor(it.embedding, dtype=torch.float32)
                if vec.shape != (self.dim,):
                    raise NewItemError(
                        f"item '{it.id}': embedding has {vec.numel()} values, the run's text has {self.dim}"
                    )
                if not torch.isfinite(vec).all():
                    raise NewItemError(f"item '{it.id}': embedding holds NaN or infinite values")
                out[i] = vec
            else:
                todo.append(i)
        if not todo:
            return out
        if self.config is None:
            raise NewItemError("this run uses no item text, so items cannot be added from text")
        if not self.encodes_text:
            raise NewItemError(
                f"this run's text encoder ({self.config.encoder}) supplies a finished matrix and cannot "
                f"encode text: give each new item its 'embedding' ({self.dim} floats)"
            )
        texts = self.texts([items[i] for i in todo])
        encoder = self._loaded()
        vecs = torch.from_numpy(encoder.encode(texts, batch_size=self.config.batch_size))
        if vecs.shape[1] != self.dim:
            raise NewItemError(f"the encoder returned {vecs.shape[1]}-d vectors, the run's text has {self.dim}")
        out[todo] = vecs
        return out

    def _loaded(self) -> TextEncoder:
        with self._lock:
            if self._encoder is None:
                assert self.config is not None
                encoder = make_encoder(self.config)
                encoder.prepare(resolve_device(self.device), self.config.resolved_cache_dir())
                encoder.ensure_loaded()
                self._encoder = encoder
            return self._encoder
