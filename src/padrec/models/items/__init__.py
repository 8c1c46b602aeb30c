"""Item representations registered by name (``id``, ``text``, ``hybrid``, ...); see ``base``."""

from padrec.models.items.base import ITEM_REPRESENTATIONS, ItemContext, ItemRepresentation, build_items, items_config
from padrec.models.items.fusion import ConcatFusion, HybridItemsConfig
from padrec.models.items.id import IDEmbedding, IDItemsConfig
from padrec.models.items.precomputed import PrecomputedItems, freeze_item_tables
from padrec.models.items.text import TextItemsConfig, TextMLP, normalize_text

__all__ = [
    "ITEM_REPRESENTATIONS",
    "ConcatFusion",
    "HybridItemsConfig",
    "IDEmbedding",
    "IDItemsConfig",
    "ItemContext",
    "ItemRepresentation",
    "PrecomputedItems",
    "TextItemsConfig",
    "TextMLP",
    "build_items",
    "freeze_item_tables",
    "items_config",
    "normalize_text",
]
