"""Serving: a trained run as a recommender with precomputed item vectors (no LLM per request)."""

from padrec.serving.export import export_serving
from padrec.serving.recommender import Recommendation, Recommender

__all__ = ["Recommendation", "Recommender", "export_serving"]
