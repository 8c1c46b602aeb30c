"""Item vectors frozen into tables for serving: no text encoder, MLP or fusion per request."""

from __future__ import annotations

import torch
from torch import nn

from padrec.models.items.base import ItemRepresentation


def grow_rows(table: torch.Tensor, rows: int) -> torch.Tensor:
    """``table`` (R×...) with zero rows appended up to ``rows`` rows (unchanged when R >= rows).

    Growth is amortised: the result is a view of the first ``rows`` rows of a larger storage
    (25% spare), so adding items one at a time does not copy the whole table each time (which
    also fragments the heap: the resident size of a service adding items kept growing).
    """
    if table.shape[0] >= rows:
        return table
    base = table._base if getattr(table, "_base", None) is not None else None
    if (
        base is not None
        and base.shape[0] >= rows
        and base.shape[1:] == table.shape[1:]
        and base.data_ptr() == table.data_ptr()
    ):
        out = base[:rows]
        out[table.shape[0] :] = 0
        return out
    capacity = max(rows, table.shape[0] + table.shape[0] // 4 + 16)
    storage = table.new_zeros(capacity, *table.shape[1:])
    storage[: table.shape[0]] = table
    return storage[:rows]


class PrecomputedItems(ItemRepresentation):
    """Frozen tables: candidate vectors ``table`` ((N+1)×d) and, for a two-sided
    representation, history vectors ``history_table`` ((N+1)×d).

    In eval mode any item representation is a fixed function of the id, so serving replaces
    it with this: ``history(ids)`` and ``candidates(ids)`` are table lookups. ``adapter``, the
    original representation's :meth:`~ItemRepresentation.text_adapter` (None for ID tables),
    lets :meth:`set_items` place items from their text alone.
    """

    def __init__(
        self, table: torch.Tensor, history_table: torch.Tensor | None = None, adapter: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.num_items = table.shape[0] - 1
        self.dim = table.shape[1]
        self.register_buffer("table", table.detach().clone())
        self.history_table: torch.Tensor | None
        if history_table is None:
            self.register_buffer("history_table", None)
        else:
            self.register_buffer("history_table", history_table.detach().clone())
        self.adapter = adapter

    @property
    def reads_text(self) -> bool:
        """True when :meth:`set_items` can place items from their text (there is an adapter)."""
        return self.adapter is not None

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

    def grow(self, num_items: int) -> None:
        """Extend every table with zero rows to ids 0..``num_items``."""
        for name, buf in list(self._buffers.items()):
            if buf is not None and buf.shape[0] == self.num_items + 1:
                setattr(self, name, grow_rows(buf, num_items + 1))
        self.num_items = max(self.num_items, num_items)

    @torch.no_grad()
    def set_items(self, ids: torch.Tensor, text: torch.Tensor) -> None:
        """Give items ``ids`` ((M,) int64, 1..N for existing items, above N for new ones) the
        vectors their raw text embeddings ``text`` ((M, D)) give them, growing the tables with
        zero rows up to ``max(ids)``. Without an adapter new rows stay zeros and existing
        rows are unchanged."""
        self.grow(int(ids.max()))
        if self.adapter is None:
            return
        cand, hist = self.adapter(text.to(self.table.device), ids.to(self.table.device))
        self.table[ids] = cand.to(self.table.dtype)
        if self.history_table is not None:
            self.history_table[ids] = hist.to(self.history_table.dtype)


def freeze_item_tables(module: nn.Module, adapters: bool = True) -> int:
    """Replace the item representation of every expert inside ``module`` (any submodule with
    an ``items`` :class:`ItemRepresentation`) by its eval-mode tables (with its text adapter
    unless ``adapters=False``); returns how many.

    Call in eval mode after loading weights.
    """
    count = 0
    for sub in list(module.modules()):
        items = sub._modules.get("items")
        if isinstance(items, ItemRepresentation) and not isinstance(items, PrecomputedItems):
            with torch.no_grad():
                history = items.all_history() if items.two_sided else None
                adapter = items.text_adapter() if adapters else None
                sub.items = PrecomputedItems(items.all(), history, adapter)
            count += 1
    return count


def drop_text_adapters(module: nn.Module) -> int:
    """Remove the adapters of every :class:`PrecomputedItems` in ``module`` (serving files
    written before adapters existed); returns how many were removed."""
    count = 0
    for sub in module.modules():
        if isinstance(sub, PrecomputedItems) and sub.adapter is not None:
            sub.adapter = None
            count += 1
    return count
