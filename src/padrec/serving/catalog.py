"""The served catalogue: raw item ids and titles by internal id, lookup and title search."""

from __future__ import annotations

from dataclasses import dataclass, field


class UnknownItem(KeyError):
    """A history entry names no item (by id or exact title)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Catalog:
    """Items 1..N (index 0 = padding): ``item_ids[i]`` and ``titles[i]`` of internal id ``i``.

    ``added`` holds the internal ids of items added at serving time (not in training).
    """

    item_ids: list[str]
    titles: list[str]
    added: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.titles):
            raise ValueError(f"catalog: {len(self.item_ids)} ids but {len(self.titles)} titles")
        self._by_id = {str(k): i for i, k in enumerate(self.item_ids) if i > 0}
        self._by_title: dict[str, int] = {}
        self._lower: list[str] = []
        for i, t in enumerate(self.titles):
            self._index_title(i, t)

    def _index_title(self, i: int, title: str) -> None:
        low = title.lower()
        if i < len(self._lower):
            self._lower[i] = low
        else:
            self._lower.append(low)
        if i > 0 and low and low not in self._by_title:
            self._by_title[low] = i

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    def lookup(self, raw_id: str) -> int | None:
        """Internal id of a raw item id, or None."""
        return self._by_id.get(str(raw_id))

    def resolve(self, token: str, where: str = "item") -> int:
        """Internal id of an item id or an exact title (case-insensitive); :class:`UnknownItem`
        naming ``where`` otherwise."""
        if token in self._by_id:
            return self._by_id[token]
        hit = self._by_title.get(token.strip().lower())
        if hit is None:
            raise UnknownItem(f"{where}: '{token[:80]}' is no item id or title of this catalogue")
        return hit

    def describe(self, i: int) -> dict[str, object]:
        """``{"id", "title", "new"}`` of internal id ``i``."""
        return {"id": self.item_ids[i], "title": self.titles[i], "new": i in self.added}

    def search(self, query: str, limit: int = 20) -> list[int]:
        """Internal ids whose title contains ``query`` (case-insensitive): titles starting with
        it first, then the rest, each in catalogue order."""
        q = query.strip().lower()
        if not q:
            return []
        starts, contains = [], []
        for i in range(1, len(self._lower)):
            t = self._lower[i]
            pos = t.find(q)
            if pos == 0:
                starts.append(i)
            elif pos > 0:
                contains.append(i)
            if len(starts) >= limit:
                break
        return (starts + contains)[:limit]

    def set_item(self, i: int, raw_id: str, title: str, new: bool) -> None:
        """Record item ``i`` (``i == num_items + 1`` appends it)."""
        if i == len(self.item_ids):
            self.item_ids.append(raw_id)
            self.titles.append(title)
        else:
            old = self._lower[i]
            self.titles[i] = title
            self._lower[i] = title.lower()
            if self._by_title.get(old) == i:  # the title now belongs to the next item holding it
                del self._by_title[old]
                other = next((j for j in range(1, len(self._lower)) if self._lower[j] == old), None)
                if other is not None:
                    self._by_title[old] = other
        self._by_id[raw_id] = i
        self._index_title(i, title)
        if new:
            self.added.add(i)
