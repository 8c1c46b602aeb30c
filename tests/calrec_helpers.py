"""A tiny causal LM for the CALRec tests, built offline: a byte-level BPE tokenizer trained on
the toy item texts and a randomly initialised 2-layer Llama, saved as a Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

import torch


def make_tiny_lm(directory: Path, texts: list[str], seed: int = 0) -> Path:
    """Write a tokenizer + a 2-layer Llama (hidden 32) to ``directory``; returns it."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    corpus = texts + ["A customer's purchases, oldest first:\n- ", "Next purchase: ", "\n"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus * 4, vocab_size=400, min_frequency=1, special_tokens=["<eos>", "<pad>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<eos>", pad_token="<pad>")
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(str(directory))
    return directory
