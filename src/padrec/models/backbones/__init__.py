"""Registered sequence backbones. Importing this package registers every backbone module in
it: adding a backbone is adding one file with ``@BACKBONES.register("name")``."""

import importlib
import pkgutil

from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BACKBONES", "Backbone", "BackboneConfig"]
