"""LLM-ESR (Large Language Models Enhancement for long-tailed Sequential Recommendation; Liu et
al., NeurIPS 2024): its config, its similar-user retrieval and its method."""

from padrec.methods.llm_esr.config import LLMESRConfig
from padrec.methods.llm_esr.method import LLMESR
from padrec.methods.llm_esr.retrieval import SimilarUserBatch, SimilarUserBatches, SimilarUsers

__all__ = ["LLMESR", "LLMESRConfig", "SimilarUserBatch", "SimilarUserBatches", "SimilarUsers"]
