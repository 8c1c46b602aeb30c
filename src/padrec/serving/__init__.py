"""Serving: a trained run as a recommender with precomputed item vectors (no LLM per request)."""

from padrec.serving.recommender import Recommender, export_serving

__all__ = ["Recommender", "export_serving"]
