"""Registered sequence backbones. Importing this package registers the built-in ones."""

from padrec.models.backbones import caser, gru4rec, sasrec  # noqa: F401  (registration)
from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig

__all__ = ["BACKBONES", "Backbone", "BackboneConfig"]
