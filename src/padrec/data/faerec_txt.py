"""Reader of FAERec's released sequence files (``faerec_txt``): ``uid item item ...`` per line.

Read exactly as published: no filtering, and the release's item numbers kept when they are 1..max.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from padrec.data.dataset import PAD_TOKEN, SequenceDataset
from padrec.data.errors import DataError
from padrec.data.preprocess import split_by_lengths
from padrec.data.tables import read_text, require_file

__all__ = ["read_faerec_txt"]

# An item id: an integer >= 1 in ASCII digits (leading zeros and a "+" allowed, as int() reads).
_ITEM_ID = re.compile(r"\+?0*[1-9][0-9]*")


def read_faerec_txt(path: str | Path, name: str | None = None) -> SequenceDataset:
    """Read a FAERec release file: one line per user, ``uid item item ...`` (spaces, ids >= 1).

    The file's item ids are kept as internal ids when they are exactly 1..max (so numbers match
    the release); otherwise they are mapped densely in increasing numeric order (ids of any
    size: nothing is allocated in proportion to an id's value). The item table has no columns
    (the release ships no text). ``name`` defaults to the lower-cased stem.

    Raises :class:`DataError` naming the file and line for an empty file or line, a line
    without items, an item id that is not a positive integer, or a repeated user id.
    """
    p = require_file(path, "FAERec sequence file")
    lines = read_text(p, "FAERec sequence file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{p}: FAERec sequence file is empty")
    users: list[str] = []
    lengths = np.zeros(len(lines), dtype=np.int64)
    tokens: list[str] = []
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) < 2:
            what = "an empty line" if not parts else f"only {parts[0]!r}"
            raise DataError(
                f"{p}: line {i + 1}: expected 'user_id item_id item_id ...' separated by spaces, got {what}"
            )
        users.append(parts[0])
        lengths[i] = len(parts) - 1
        tokens.extend(parts[1:])
    flat: np.ndarray | None
    try:
        flat = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):  # not integers, or integers beyond 64 bits
        flat = None
    if flat is None or (flat < 1).any():
        _check_tokens(lines, p)
    dup = pd.Series(users).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"{p}: line {i + 1}, field 1 (user id): duplicate user id {users[i]!r}; expected one line per user"
        )
    if flat is not None:
        originals = np.unique(flat)  # sorted; never an array sized by the largest id
        ids_kept = bool(originals[-1] == len(originals))  # ids >= 1, distinct: exactly 1..max
        internal = flat if ids_kept else np.searchsorted(originals, flat) + 1
        names = [str(x) for x in originals]
    else:
        internal, names = _map_large_ids(tokens)
        ids_kept = False
    n = len(names)
    item_ids = np.empty(n + 1, dtype=object)
    item_ids[0] = PAD_TOKEN
    item_ids[1:] = names
    return SequenceDataset(
        name=name or p.stem.lower(),
        sequences=split_by_lengths(np.asarray(internal, dtype=np.int64), lengths),
        user_ids=np.asarray(users, dtype=object),
        item_ids=item_ids,
        item_table=pd.DataFrame(index=pd.RangeIndex(n + 1)),
        source={"reader": "faerec_txt", "files": [str(p)], "ids_kept": ids_kept},
    )


def _check_tokens(lines: list[str], p: Path) -> None:
    """Raise :class:`DataError` at the first item id that is not an integer >= 1 (digits 0-9)."""
    for i, line in enumerate(lines):
        for j, tok in enumerate(line.split()[1:], start=2):
            if not _ITEM_ID.fullmatch(tok):
                raise DataError(
                    f"{p}: line {i + 1}, field {j} (item id): expected an integer >= 1 separated "
                    f"by spaces, got {tok[:60]!r}"
                )


def _map_large_ids(tokens: list[str]) -> tuple[np.ndarray, list[str]]:
    """Dense 1..N ids of item ids some of which exceed 64 bits, in increasing numeric order.

    Ids are compared as decimal strings (no leading zeros: shorter is smaller, then digit by
    digit), so no id is converted to a number and any length works.
    """
    canonical = [t.lstrip("+").lstrip("0") for t in tokens]
    names = sorted(set(canonical), key=lambda s: (len(s), s))
    index = {s: k + 1 for k, s in enumerate(names)}
    return np.fromiter((index[s] for s in canonical), dtype=np.int64, count=len(canonical)), names
