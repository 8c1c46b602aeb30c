"""The one entry point: item table -> frozen (N+1) x D text-embedding matrix.

Holds :class:`TextConfig` (how embeddings are made) and :func:`build_text_embeddings` (render,
look up the cache, encode what is missing, assemble); the result type
:class:`~padrec.text.matrix.TextEmbeddings` and its files live in :mod:`padrec.text.matrix`.

>>> from padrec.text import TextConfig, build_text_embeddings
>>> emb = build_text_embeddings(dataset, TextConfig(template="title"))
>>> emb.matrix.shape          # (N+1, 384) with the default MiniLM; row 0 is zeros
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from padrec.config import ConfigError, from_dict, to_dict
from padrec.data.cache import default_cache_dir
from padrec.data.dataset import SequenceDataset
from padrec.devices import resolve_device
from padrec.text.cache import CacheEntry, cache_path, consolidate, read_cache, text_hash
from padrec.text.encoders import ENCODERS, TextEncoder
from padrec.text.errors import TextError
from padrec.text.matrix import TextEmbeddings
from padrec.text.resume import Checkpointer, DimensionChanged, encode_resumable
from padrec.text.templates import render_texts

logger = logging.getLogger("padrec.text")


@dataclass
class TextConfig:
    """How item text embeddings are made.

    Attributes:
        encoder: registered encoder name: ``sentence-transformers`` (default, offline MiniLM),
            ``causal-lm`` (offline SmolLM2 or a local LLM), ``openai`` (HTTP endpoint),
            ``precomputed`` (a user's matrix).
        encoder_config: options of that encoder (keys of its config dataclass, e.g.
            ``{"model": "/models/llama3-llm2vec", "dtype": "bfloat16"}``); unknown keys are errors.
        template: ``title`` (PAD), ``faerec`` (attributes), or a template string such as
            ``"{title}[ by {brand}]"`` (see :mod:`padrec.text.templates`).
        on_missing: items left without text (required field missing, empty rendering):
            ``error`` (default; the message lists them) or ``zero`` (zero rows, with a warning).
        batch_size: texts per forward pass (per request for ``openai``); 128 measured ~20%
            less CPU per title than 64 for MiniLM on CPU.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available).
        num_threads: torch CPU threads while encoding; 0 leaves torch's setting.
        cache_dir: cache root; ``""`` = ``$PADREC_CACHE`` or ``~/.cache/padrec``.
        use_cache: read and update the content-addressed cache.
    """

    encoder: str = "sentence-transformers"
    encoder_config: dict[str, Any] = field(default_factory=dict)
    template: str = "title"
    on_missing: Literal["error", "zero"] = "error"
    batch_size: int = 128
    device: str = "auto"
    num_threads: int = 0
    cache_dir: str = ""
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")
        if self.on_missing not in ("error", "zero"):
            raise ValueError(f"on_missing must be 'error' or 'zero', got {self.on_missing!r}")

    def resolved_cache_dir(self) -> Path:
        """The cache root this config uses."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


def make_encoder(config: TextConfig) -> TextEncoder:
    """Instantiate ``config.encoder`` with ``config.encoder_config`` (strictly checked)."""
    if config.encoder not in ENCODERS:
        raise ConfigError(f"text.encoder: unknown encoder {config.encoder!r}; known: {', '.join(ENCODERS.names())}")
    cls = ENCODERS.get(config.encoder)
    enc_cfg = from_dict(cls.config_class, config.encoder_config, where="text.encoder_config")
    return cls(enc_cfg)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (0 = unchanged), restoring the old count."""
    if n <= 0:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _describe(ids: list[int], item_ids: np.ndarray, reasons: dict[int, str] | None = None, limit: int = 10) -> str:
    parts = []
    for i in ids[:limit]:
        s = f"{item_ids[i]} (id {i})"
        if reasons:
            s += f": {reasons[i]}"
        parts.append(s)
    more = f", ... {len(ids) - limit} more" if len(ids) > limit else ""
    return "; ".join(parts) + more


def _check_dataset(dataset: SequenceDataset) -> None:
    n_rows = len(dataset.item_table)
    if n_rows != len(dataset.item_ids):
        raise TextError(
            f"dataset {dataset.name!r}: item_table has {n_rows} rows but there are "
            f"{len(dataset.item_ids)} item ids (expected N+1 each, row 0 = padding)"
        )
    if dataset.num_items < 1:
        raise TextError(f"dataset {dataset.name!r} has no items")


def _checkpointer(
    path: Path | None, identity: dict[str, Any], template_key: str, encoder: TextEncoder, entry: CacheEntry | None
) -> Checkpointer | None:
    if path is None:
        return None
    return Checkpointer(path, identity, template_key, encoder.normalize, expect_dim=entry.dim if entry else None)


def _encode(
    encoder: TextEncoder,
    distinct: dict[str, str],
    todo: list[str],
    config: TextConfig,
    name: str,
    progress: bool,
    checkpoint: Checkpointer | None,
) -> np.ndarray:
    """Vectors of the texts ``todo`` (hashes), saved chunk by chunk into the cache as they come."""
    return encode_resumable(
        encoder,
        [distinct[h] for h in todo],
        todo,
        batch_size=config.batch_size,
        progress=progress,
        desc=f"encoding {name} ({config.encoder})",
        checkpoint=checkpoint,
    )


def _discard(path: Path, entry: CacheEntry) -> None:
    """Remove a cache file and its parts that no longer match the encoder (a warning was logged)."""
    for f in [path, *entry.parts]:
        try:
            f.unlink(missing_ok=True)
        except OSError:
            pass


def build_text_embeddings(
    dataset: SequenceDataset, config: TextConfig | None = None, progress: bool = True
) -> TextEmbeddings:
    """Make (or fetch from the cache) the dataset's frozen item text-embedding matrix.

    Renders one text per item with ``config.template``, looks each distinct text up in the
    cache by content hash, encodes only the texts not found (longest first, in batches, under
    ``torch.inference_mode``, with a progress bar), stores them back, and assembles the
    matrix in internal-id order. A fully cached call never loads the model.

    While encoding, finished chunks are saved in the cache as they come (every 1,024 texts or
    30 s, and when encoding stops on an error or Ctrl-C; see :mod:`padrec.text.resume`), so an
    interrupted call, even one killed with ``kill -9``, loses at most one chunk: the next call
    encodes only what is missing and returns the matrix an uninterrupted call gives, bit for bit.

    Args:
        dataset: the processed dataset (item_table rows 0..N, row 0 padding).
        config: encoder, template, batching, device and cache options (defaults: offline
            MiniLM on titles).
        progress: show a tqdm bar (items/s, ETA) while encoding.

    Returns:
        :class:`TextEmbeddings`; ``matrix`` is (N+1) x D float32 with row 0 zeros.

    Raises:
        TextError: the template names unknown columns; every item lacks text; some items lack
            text and ``on_missing="error"``; NaN/inf vectors; shape mismatches.
        MissingDependencyError: the encoder's optional package is missing (names the pip command).
        ConfigError: unknown encoder name or encoder option.
    """
    config = config or TextConfig()
    t_start = time.perf_counter()
    _check_dataset(dataset)
    encoder = make_encoder(config)
    item_ids = np.asarray(dataset.item_ids)
    n = dataset.num_items
    try:
        device = resolve_device(config.device)
    except (ValueError, RuntimeError) as exc:
        raise TextError(str(exc)) from exc
    cache_dir = config.resolved_cache_dir()
    encoder.prepare(device, cache_dir)

    if encoder.produces == "matrix":
        matrix_np, missing_ids = encoder.item_matrix(item_ids)  # type: ignore[attr-defined]
        if missing_ids:
            logger.warning(
                "precomputed: %d of %d items have no row and get zeros: %s",
                len(missing_ids),
                n,
                _describe(missing_ids, item_ids),
            )
        return TextEmbeddings(
            matrix=torch.from_numpy(matrix_np),
            encoder=config.encoder,
            identity=encoder.identity(),
            template="",
            item_ids=[str(x) for x in item_ids],
            missing_ids=missing_ids,
            total_seconds=time.perf_counter() - t_start,
            device=str(device),
        )

    rendered = render_texts(dataset.item_table, config.template)
    missing = sorted(rendered.missing)
    if len(missing) == n:
        first = missing[0]
        raise TextError(
            f"dataset {dataset.name!r}: all {n} items lack text under template "
            f"{config.template!r} (e.g. {rendered.missing[first]}); pick another template or fields"
        )
    if missing:
        detail = _describe(missing, item_ids, rendered.missing)
        if config.on_missing == "error":
            raise TextError(
                f"dataset {dataset.name!r}: {len(missing)} of {n} items have no text under template "
                f"{config.template!r}: {detail}. Fill them in, use an optional field "
                f"({{field?}} or [segment]), or set on_missing='zero' (--missing zero) to give them zero rows"
            )
        logger.warning("%d of %d items have no text and get zero rows: %s", len(missing), n, detail)

    missing_set = set(missing)
    item_hash: dict[int, str] = {}
    distinct: dict[str, str] = {}  # hash -> text, in order of first appearance
    for i in range(1, n + 1):
        if i in missing_set:
            continue
        h = text_hash(rendered.texts[i])
        item_hash[i] = h
        distinct.setdefault(h, rendered.texts[i])

    identity = encoder.identity()
    path = cache_path(cache_dir, identity, rendered.template_key) if config.use_cache else None
    entry = read_cache(path, identity, rendered.template_key) if path is not None else None
    known = entry.index() if entry is not None else {}
    todo = [h for h in distinct if h not in known]
    hits = len(distinct) - len(todo)
    if todo and hits:
        logger.info("text cache %s: %d distinct texts cached, encoding the other %d", path, hits, len(todo))

    load_s = enc_s = enc_cpu = 0.0
    rate: float | None = None
    new_matrix: np.ndarray | None = None
    written: list[Path] = []  # part files this call saved
    if todo:
        with torch_threads(config.num_threads):
            t0 = time.perf_counter()
            encoder.ensure_loaded()
            load_s = time.perf_counter() - t0
            t1, c1 = time.perf_counter(), time.process_time()
            checkpoint = _checkpointer(path, identity, rendered.template_key, encoder, entry)
            try:
                new_matrix = _encode(encoder, distinct, todo, config, dataset.name, progress, checkpoint)
            except DimensionChanged as exc:
                assert entry is not None and path is not None
                logger.warning(
                    "text cache %s: holds %d-d vectors but the encoder now gives %d-d; rebuilding it from scratch",
                    path,
                    entry.dim,
                    exc.width,
                )
                _discard(path, entry)
                entry, known, hits = None, {}, 0
                todo = list(distinct)
                checkpoint = _checkpointer(path, identity, rendered.template_key, encoder, None)
                new_matrix = _encode(encoder, distinct, todo, config, dataset.name, progress, checkpoint)
            enc_s, enc_cpu = time.perf_counter() - t1, time.process_time() - c1
            written = checkpoint.written if checkpoint is not None else []
        rate = len(todo) / enc_s if enc_s > 0 else None
    if path is not None and (todo or (entry is not None and entry.parts)):
        dim = new_matrix.shape[1] if new_matrix is not None else entry.dim  # type: ignore[union-attr]
        old_hashes = entry.hashes if entry is not None else []
        old_matrix = entry.matrix if entry is not None else np.zeros((0, dim), np.float32)
        merged = CacheEntry(
            hashes=old_hashes + todo,
            matrix=np.concatenate([old_matrix, new_matrix]) if new_matrix is not None else old_matrix,
            created=entry.created if entry is not None else "",
        )
        parts = (entry.parts if entry is not None else []) + written
        try:
            consolidate(path, merged, identity, rendered.template_key, encoder.normalize, parts)
        except OSError as exc:
            logger.warning("text cache %s: could not be written (%s); continuing without caching", path, exc)

    dim = new_matrix.shape[1] if new_matrix is not None else entry.dim  # type: ignore[union-attr]
    matrix = np.zeros((n + 1, dim), dtype=np.float32)
    new_index = {h: r for r, h in enumerate(todo)}
    for i, h in item_hash.items():
        if h in new_index:
            matrix[i] = new_matrix[new_index[h]]  # type: ignore[index]
        else:
            matrix[i] = entry.matrix[known[h]]  # type: ignore[union-attr]
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):
        raise TextError(f"{len(bad)} item vector(s) contain NaN/inf: {_describe(list(bad), item_ids)}")

    result = TextEmbeddings(
        matrix=torch.from_numpy(matrix),
        encoder=config.encoder,
        identity=identity,
        template=rendered.template_key,
        item_ids=[str(x) for x in item_ids],
        missing_ids=missing,
        encoded=len(todo),
        cache_hits=hits,
        items_per_second=rate,
        load_seconds=load_s,
        encode_seconds=enc_s,
        encode_cpu_seconds=enc_cpu,
        total_seconds=time.perf_counter() - t_start,
        cache_path=str(path) if path is not None else None,
        device=str(device),
    )
    logger.info(
        "text embeddings for %s: %d x %d, %d encoded, %d from cache, %.2f s",
        dataset.name,
        n + 1,
        dim,
        result.encoded,
        result.cache_hits,
        result.total_seconds,
    )
    return result


def text_config_from_dict(data: dict[str, Any] | None) -> TextConfig:
    """``TextConfig`` from a mapping (YAML section ``text``), refusing unknown keys."""
    return from_dict(TextConfig, data, where="text")


def text_config_to_dict(config: TextConfig) -> dict[str, Any]:
    """Plain-dict form of a ``TextConfig`` (for YAML/JSON)."""
    return to_dict(config)
