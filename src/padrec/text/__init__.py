"""Item text embeddings: templates, pluggable encoders, a content-addressed cache.

Every language-model method starts from a frozen (N+1) x D float32 matrix with one row per
internal item id (row 0 = padding zeros). :func:`build_text_embeddings` makes it::

    from padrec.text import TextConfig, build_text_embeddings
    emb = build_text_embeddings(dataset, TextConfig(encoder="sentence-transformers", template="title"))
    emb.matrix          # torch.FloatTensor (N+1) x 384

Encoders (registry :data:`ENCODERS`): ``sentence-transformers``, ``causal-lm``, ``openai``,
``precomputed``. See docs/TEXT.md.
"""

from padrec.data.cache import default_cache_dir
from padrec.text import causal_lm, openai_compat, precomputed  # noqa: F401  (register encoders)
from padrec.text.cache import CacheEntry, read_cache, text_hash, write_cache
from padrec.text.causal_lm import CausalLMConfig, CausalLMEncoder
from padrec.text.check import Neighbours, nearest_neighbours, pick_items
from padrec.text.embeddings import TextConfig, build_text_embeddings, make_encoder, text_config_from_dict
from padrec.text.encoders import ENCODERS, SentenceTransformerConfig, SentenceTransformerEncoder, TextEncoder
from padrec.text.errors import EncoderRequestError, MissingDependencyError, TextError
from padrec.text.matrix import TextEmbeddings
from padrec.text.openai_compat import OpenAIConfig, OpenAIEncoder
from padrec.text.precomputed import PrecomputedConfig, PrecomputedEncoder
from padrec.text.templates import RenderedTexts, render_texts

__all__ = [
    "ENCODERS",
    "CacheEntry",
    "CausalLMConfig",
    "CausalLMEncoder",
    "EncoderRequestError",
    "MissingDependencyError",
    "Neighbours",
    "OpenAIConfig",
    "OpenAIEncoder",
    "PrecomputedConfig",
    "PrecomputedEncoder",
    "RenderedTexts",
    "SentenceTransformerConfig",
    "SentenceTransformerEncoder",
    "TextConfig",
    "TextEmbeddings",
    "TextEncoder",
    "TextError",
    "build_text_embeddings",
    "default_cache_dir",
    "make_encoder",
    "nearest_neighbours",
    "pick_items",
    "read_cache",
    "render_texts",
    "text_config_from_dict",
    "text_hash",
    "write_cache",
]
