"""Shared helpers for the text-embedding tests: a tiny dataset and a fast fake encoder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from padrec.data.dataset import PAD_TOKEN, SequenceDataset
from padrec.text import ENCODERS, TextEncoder


def make_dataset(rows: list[dict[str, str]], name: str = "toy") -> SequenceDataset:
    """A SequenceDataset over ``rows`` (one dict of fields per item, ids "i1", "i2", ...)."""
    columns = sorted({k for r in rows for k in r})
    table = pd.DataFrame([{c: "" for c in columns}] + [{c: r.get(c, "") for c in columns} for r in rows])
    item_ids = np.array([PAD_TOKEN] + [f"i{k}" for k in range(1, len(rows) + 1)], dtype=object)
    seqs = [np.arange(1, len(rows) + 1, dtype=np.int64)]
    return SequenceDataset(name=name, sequences=seqs, user_ids=np.array(["u1"]), item_ids=item_ids, item_table=table)


def titles_dataset(titles: list[str], name: str = "toy") -> SequenceDataset:
    return make_dataset([{"title": t} for t in titles], name=name)


def hash_vector(text: str, dim: int) -> np.ndarray:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return rng.standard_normal(dim).astype(np.float32)


@dataclass
class HashEncoderConfig:
    """Fake encoder options: width, a text that yields NaN, a version string in the identity."""

    dim: int = 6
    nan_text: str = ""
    version: str = "1"
    normalize: bool = False


@ENCODERS.register("test-hash")
class HashEncoder(TextEncoder):
    """Deterministic vectors from text hashes; counts loads and encoded texts (class-wide)."""

    config_class = HashEncoderConfig
    loads: ClassVar[int] = 0
    encoded_texts: ClassVar[list[str]] = []

    def identity(self) -> dict[str, Any]:
        return {
            "encoder": "test-hash",
            "dim": self.config.dim,
            "version": self.config.version,
            "normalize": self.config.normalize,
        }

    def load(self) -> None:
        HashEncoder.loads += 1

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        HashEncoder.encoded_texts.extend(texts)
        out = np.stack([hash_vector(t, self.config.dim) for t in texts])
        for j, t in enumerate(texts):
            if self.config.nan_text and t == self.config.nan_text:
                out[j, 0] = np.nan
        return out

    @classmethod
    def reset(cls) -> None:
        cls.loads = 0
        cls.encoded_texts = []


@dataclass
class BatchEncoderConfig:
    """Options of the batch-sensitive fake encoder."""

    dim: int = 4
    normalize: bool = False


@ENCODERS.register("test-batch")
class BatchSensitiveEncoder(TextEncoder):
    """Vectors that depend on the whole batch (as padding does in a real model, in the last bits).

    A resumed encoding only reproduces an uninterrupted one when it cuts the same batches.
    ``interrupt_after`` (class-wide): raise KeyboardInterrupt, as Ctrl-C would, instead of
    encoding the batch that would take the total past that many texts.
    """

    config_class = BatchEncoderConfig
    interrupt_after: ClassVar[int | None] = None
    encoded_texts: ClassVar[list[str]] = []
    batches: ClassVar[list[list[str]]] = []

    def identity(self) -> dict[str, Any]:
        return {"encoder": "test-batch", "dim": self.config.dim, "normalize": self.config.normalize}

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        cls = BatchSensitiveEncoder
        if cls.interrupt_after is not None and len(cls.encoded_texts) + len(texts) > cls.interrupt_after:
            raise KeyboardInterrupt
        cls.encoded_texts.extend(texts)
        cls.batches.append(list(texts))
        base = np.stack([hash_vector(t, self.config.dim) for t in texts])
        return base + np.float32(1e-3) * base.mean(axis=0, keepdims=True)

    @classmethod
    def reset(cls, interrupt_after: int | None = None) -> None:
        cls.interrupt_after = interrupt_after
        cls.encoded_texts = []
        cls.batches = []
