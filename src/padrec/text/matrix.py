"""The built item text-embedding matrix, :class:`TextEmbeddings`, and its file pair.

A :class:`TextEmbeddings` holds the frozen (N+1) x D matrix that
:func:`padrec.text.build_text_embeddings` returns, with how it was made (encoder identity,
template, cache hits, timings). :meth:`TextEmbeddings.save` writes it as
``<name>.safetensors`` (tensor ``embeddings``) + ``<name>.json`` (metadata and item ids),
both atomically; :meth:`TextEmbeddings.load` reads such a pair back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from padrec.io import FileFormatError, atomic_path, read_json, write_json
from padrec.text.errors import TextError


@dataclass
class TextEmbeddings:
    """A frozen item text-embedding matrix and how it was made.

    Attributes:
        matrix: (N+1) x D float32 tensor; row ``i`` = internal item ``i``; row 0 (padding) and
            items without text are zeros.
        encoder: encoder name; ``identity`` the full encoder description the cache keys on.
        template: canonical template key.
        item_ids: original item ids, length N+1 (``[PAD]`` first).
        missing_ids: internal ids given zero rows for lack of text (or of a precomputed row).
        encoded: distinct texts encoded by this call; ``cache_hits``: distinct texts taken from
            the cache.
        items_per_second: encoding throughput of this call (None when nothing was encoded).
        load_seconds / encode_seconds / total_seconds: model load, encoding, whole call (wall).
        encode_cpu_seconds: CPU time of this process (all threads) while encoding; compared
            with ``encode_seconds`` it shows how much other processes slowed the encoding.
        cache_path: the cache file (None when caching was off or not applicable).
    """

    matrix: torch.Tensor
    encoder: str
    identity: dict[str, Any]
    template: str
    item_ids: list[str]
    missing_ids: list[int] = field(default_factory=list)
    encoded: int = 0
    cache_hits: int = 0
    items_per_second: float | None = None
    load_seconds: float = 0.0
    encode_seconds: float = 0.0
    encode_cpu_seconds: float = 0.0
    total_seconds: float = 0.0
    cache_path: str | None = None
    device: str = "cpu"

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def num_items(self) -> int:
        return int(self.matrix.shape[0]) - 1

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description (everything but the matrix and the id list)."""
        return {
            "encoder": self.encoder,
            "identity": self.identity,
            "template": self.template,
            "dim": self.dim,
            "num_items": self.num_items,
            "missing_ids": self.missing_ids,
            "encoded": self.encoded,
            "cache_hits": self.cache_hits,
            "items_per_second": self.items_per_second,
            "load_seconds": round(self.load_seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "encode_cpu_seconds": round(self.encode_cpu_seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
            "cache_path": self.cache_path,
            "device": self.device,
        }

    metadata_dict = metadata

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` (tensor ``embeddings``) and ``<path>.json`` (metadata + item_ids).

        The JSON's ``item_ids`` list makes the pair usable as a ``precomputed`` encoder input.
        Both files are written to temporary names first, then renamed (the JSON first).
        """
        from safetensors.torch import save_file

        base = Path(path)
        if base.suffix in (".safetensors", ".json"):
            base = base.with_suffix("")
        st_path, js_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
        meta = self.metadata()
        meta["item_ids"] = self.item_ids
        with atomic_path(st_path) as tmp_st:
            save_file(
                {"embeddings": self.matrix.contiguous()},
                str(tmp_st),
                metadata={"padrec_text_embeddings": json.dumps(self.metadata(), separators=(",", ":"))},
            )
            write_json(js_path, meta)
        return st_path, js_path

    @classmethod
    def load(cls, path: str | Path) -> TextEmbeddings:
        """Read a pair written by :meth:`save` (``path`` with or without suffix)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        base = Path(path)
        if base.suffix in (".safetensors", ".json"):
            base = base.with_suffix("")
        st_path, js_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
        try:
            matrix = load_file(str(st_path))["embeddings"]
            meta = read_json(js_path, expect=dict)
        except (OSError, SafetensorError, KeyError, FileFormatError) as exc:
            raise TextError(f"{base}: cannot read text embeddings (.safetensors + .json): {exc}") from exc
        if matrix.ndim != 2 or len(meta.get("item_ids", [])) != matrix.shape[0]:
            raise TextError(
                f"{st_path}: matrix shape {tuple(matrix.shape)} does not match "
                f"{len(meta.get('item_ids', []))} item ids in {js_path}"
            )
        return cls(
            matrix=matrix.float(),
            encoder=meta.get("encoder", ""),
            identity=meta.get("identity", {}),
            template=meta.get("template", ""),
            item_ids=[str(x) for x in meta["item_ids"]],
            missing_ids=list(meta.get("missing_ids", [])),
            encoded=int(meta.get("encoded", 0)),
            cache_hits=int(meta.get("cache_hits", 0)),
            items_per_second=meta.get("items_per_second"),
            cache_path=meta.get("cache_path"),
            device=meta.get("device", "cpu"),
        )
