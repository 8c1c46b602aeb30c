"""Encoding that survives interruption: finished chunks are saved as cache part files.

:func:`encode_resumable` encodes texts batch by batch (the batches :meth:`TextEncoder.encode`
would use) and hands the vectors to a :class:`Checkpointer`, which saves them as a part file
of the text cache (:func:`padrec.text.cache.write_part`, atomic) every
:data:`CHECKPOINT_TEXTS` texts or :data:`CHECKPOINT_SECONDS` seconds, and once more when the
encoding stops on an error or Ctrl-C. A run killed at any moment (even ``kill -9``) loses at
most the texts since the last part; the next run finds the rest in the cache and encodes only
what is missing.

Why the resumed matrix is bit-identical to an uninterrupted one: texts are encoded longest
first in batches of ``batch_size`` cut from that order, and parts are only saved between
batches. What a rerun still has to encode is therefore the tail of the same order, starting
at a batch boundary, so it is cut into the same batches (batch composition can change a
model's output in the last bits).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from padrec.text.cache import write_part
from padrec.text.encoders import TextEncoder, l2_normalize

logger = logging.getLogger("padrec.text")

CHECKPOINT_TEXTS = 1024
CHECKPOINT_SECONDS = 30.0


class DimensionChanged(Exception):
    """The encoder's vectors are not as wide as the cached ones (``width`` = the new width)."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
        self.width = width


class Checkpointer:
    """Collects encoded rows and saves them as part files of the cache file ``path``.

    ``expect_dim``: the width of the cached vectors; the first batch of another width raises
    :class:`DimensionChanged` before anything is saved. When a part cannot be written
    (read-only disk), a warning is logged once and encoding goes on without checkpoints.
    """

    def __init__(
        self,
        path: Path,
        identity: dict[str, Any],
        template_key: str,
        normalize: bool,
        expect_dim: int | None = None,
        every_texts: int | None = None,
        every_seconds: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.identity = identity
        self.template_key = template_key
        self.normalize = normalize
        self.expect_dim = expect_dim
        self.every_texts = every_texts if every_texts is not None else CHECKPOINT_TEXTS
        self.every_seconds = every_seconds if every_seconds is not None else CHECKPOINT_SECONDS
        self.written: list[Path] = []
        self.saved_rows = 0
        self._hashes: list[str] = []
        self._rows: list[np.ndarray] = []
        self._since = time.monotonic()
        self._broken = False

    def add(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Take one batch; save a part when :data:`CHECKPOINT_TEXTS` or ``_SECONDS`` are reached."""
        if self.expect_dim is not None and vectors.shape[1] != self.expect_dim:
            raise DimensionChanged(int(vectors.shape[1]))
        self._hashes.extend(hashes)
        self._rows.append(vectors)
        if len(self._hashes) >= self.every_texts or time.monotonic() - self._since >= self.every_seconds:
            self.flush()

    def flush(self) -> None:
        """Save the rows collected since the last part (nothing when there are none)."""
        self._since = time.monotonic()
        if not self._hashes or self._broken:
            return
        try:
            part = write_part(
                self.path, self._hashes, np.concatenate(self._rows), self.identity, self.template_key, self.normalize
            )
        except OSError as exc:
            self._broken = True
            logger.warning("text cache %s: cannot save encoded chunks (%s); continuing without them", self.path, exc)
            return
        self.written.append(part)
        self.saved_rows += len(self._hashes)
        self._hashes, self._rows = [], []


def encode_resumable(
    encoder: TextEncoder,
    texts: list[str],
    hashes: list[str],
    *,
    batch_size: int,
    progress: bool,
    desc: str,
    checkpoint: Checkpointer | None,
) -> np.ndarray:
    """Encode ``texts`` (hashes ``hashes``) -> ``(len(texts), D)`` float32, as ``encoder.encode`` does.

    Each batch (normalised when the encoder normalises) goes to ``checkpoint``; when encoding
    stops with an exception (Ctrl-C included), the batches finished so far are saved before
    it propagates.
    """
    out: np.ndarray | None = None
    try:
        for idx, vecs in encoder.encode_batches(texts, batch_size=batch_size, progress=progress, desc=desc):
            if encoder.normalize:
                vecs = l2_normalize(vecs)
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
            if checkpoint is not None:
                checkpoint.add([hashes[i] for i in idx], vecs)
    except DimensionChanged:
        raise
    except BaseException:
        if checkpoint is not None:
            try:
                checkpoint.flush()
            except BaseException as exc:  # a second Ctrl-C while saving: the part is atomic
                logger.warning("text cache %s: encoded chunk not saved (%s)", checkpoint.path, exc)
        raise
    assert out is not None
    return out
