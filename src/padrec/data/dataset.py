"""The processed dataset every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PAD_TOKEN = "[PAD]"


@dataclass
class HeldOutItems:
    """The items a dataset holds out (``SequenceDataset.held_out``).

    Attributes:
        item_ids: raw item ids, in the full catalogue's order.
        original_ids: (K,) int64 internal id of each in the full dataset (before renumbering).
        item_table: their item-table rows (index 0..K-1, row k for ``item_ids[k]``), every text
            column of the dataset's item table (none for id-only datasets).
        id_map: (N+1,) int64 full-dataset internal id -> reduced internal id; 0 for held-out
            items and for padding.
        config: the setting (``HoldoutConfig.describe``).
        removed_interactions: interactions deleted with them.
        removed_users: raw ids of the users left with no interaction (removed from the dataset).
    """

    item_ids: list[str]
    original_ids: np.ndarray
    item_table: pd.DataFrame
    id_map: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    removed_interactions: int = 0
    removed_users: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)

    def titles(self) -> list[str]:
        """Titles of the held-out items for display (HTML references decoded, as
        :meth:`SequenceDataset.titles`); ``""`` when there is no title column."""
        if "title" not in self.item_table.columns:
            return [""] * len(self.item_ids)
        from padrec.data.values import unescape_entities

        return [unescape_entities(str(t)) for t in self.item_table["title"].tolist()]

    def records(self) -> list[dict[str, str]]:
        """One dict per held-out item: ``{"item_id": raw id, <text column>: published text, ...}``
        (the text as the item table keeps it, which is what text encoders read)."""
        cols = [str(c) for c in self.item_table.columns]
        rows = self.item_table.to_dict("records") if cols else [{} for _ in self.item_ids]
        return [{"item_id": i, **{c: str(r[c]) for c in cols}} for i, r in zip(self.item_ids, rows)]

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts (for logs and ``dataset.source``)."""
        return {
            **self.config,
            "items": len(self.item_ids),
            "removed_interactions": int(self.removed_interactions),
            "removed_users": len(self.removed_users),
        }


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
        held_out: the items removed by ``data.holdout_items`` (raw ids, former internal ids,
            item-table rows; see :class:`HeldOutItems` and :mod:`padrec.data.holdout`); None when no item
            is held out.
    """

    name: str
    sequences: list[np.ndarray]
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_table: pd.DataFrame
    source: dict = field(default_factory=dict)
    held_out: HeldOutItems | None = None

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

    def held_out_item_ids(self) -> list[str]:
        """Raw ids of the items held out of this dataset (``data.holdout_items``); empty if none."""
        return list(self.held_out.item_ids) if self.held_out is not None else []

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
