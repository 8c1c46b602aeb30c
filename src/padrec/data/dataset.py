"""The processed dataset every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PAD_TOKEN = "[PAD]"


@dataclass
class SequenceDataset:
    """Users' time-ordered item sequences with item texts and id maps.

    Internal item ids run 1..N; 0 is padding. Every array indexed by item id has N+1 rows.

    Attributes:
        name: short dataset name (e.g. ``prime_pantry``).
        sequences: one int64 array per user, internal item ids in time order.
        user_ids: original user ids, ``user_ids[u]`` for ``sequences[u]``.
        item_ids: original item ids, length N+1, ``item_ids[0] == "[PAD]"``.
        item_table: item fields (titles, brands, ...) indexed by internal id 0..N; string
            columns, ``""`` where missing; row 0 is the padding row. May have no columns
            when a dataset ships ids only.
        source: provenance (reader, files, options) recorded into caches and results.
    """

    name: str
    sequences: list[np.ndarray]
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_table: pd.DataFrame
    source: dict = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        """N, the number of real items (ids 1..N)."""
        return len(self.item_ids) - 1

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    def item_id_map(self) -> dict[str, int]:
        """Original item id -> internal id (1..N)."""
        return {str(k): i for i, k in enumerate(self.item_ids) if i > 0}

    def titles(self) -> list[str]:
        """Item titles by internal id for display (``""`` for padding / missing; empty strings if
        no title column), with HTML character references decoded (``&amp;`` -> ``&``). The item
        table keeps the published text, which text encoders read."""
        if "title" in self.item_table.columns:
            from padrec.data.values import unescape_entities

            return [unescape_entities(str(t)) for t in self.item_table["title"].tolist()]
        return [""] * (self.num_items + 1)
