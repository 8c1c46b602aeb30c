"""CITIES: Contextual Inference of Tail-Item Embeddings for Sequential Recommendation."""

from padrec.methods.cities.config import CITIESConfig
from padrec.methods.cities.method import CITIES

__all__ = ["CITIES", "CITIESConfig"]
