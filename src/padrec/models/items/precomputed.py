"""Item vectors frozen into tables for serving: no text encoder, MLP or fusion per request."""

from __future__ import annotations

import torch
from torch import nn

from padrec.models.items.base import ItemRepresentation


class PrecomputedItems(ItemRepresentation):
    """Frozen tables: candidate vectors ``table`` ((N+1)×d) and, for a two-sided
    representation, history vectors ``history_table`` ((N+1)×d).

    In eval mode any item representation is a fixed function of the id, so serving replaces
    it with this: ``history(ids)`` and ``candidates(ids)`` are table lookups.
    """

    def __init__(self, table: torch.Tensor, history_table: torch.Tensor | None = None) -> None:
        super().__init__()
        self.num_items = table.shape[0] - 1
        self.dim = table.shape[1]
        self.register_buffer("table", table.detach().clone())
        self.history_table: torch.Tensor | None
        if history_table is None:
            self.register_buffer("history_table", None)
        else:
            self.register_buffer("history_table", history_table.detach().clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> S×d candidate vectors."""
        return self.table[ids]

    def history(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: S -> S×d history vectors."""
        return (self.table if self.history_table is None else self.history_table)[ids]

    def all(self) -> torch.Tensor:
        return self.table

    def all_history(self) -> torch.Tensor:
        return self.table if self.history_table is None else self.history_table


def freeze_item_tables(module: nn.Module) -> int:
    """Replace the item representation of every expert inside ``module`` (any submodule with
    an ``items`` :class:`ItemRepresentation`) by its eval-mode tables; returns how many.

    Call in eval mode after loading weights.
    """
    count = 0
    for sub in list(module.modules()):
        items = sub._modules.get("items")
        if isinstance(items, ItemRepresentation) and not isinstance(items, PrecomputedItems):
            with torch.no_grad():
                history = items.all_history() if items.two_sided else None
                sub.items = PrecomputedItems(items.all(), history)
            count += 1
    return count
