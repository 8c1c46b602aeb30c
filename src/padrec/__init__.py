"""padrec: sequential recommendation enhanced by language models."""

__version__ = "0.1.0"
