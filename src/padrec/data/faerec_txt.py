"""Reader of FAERec's released sequence files (``faerec_txt``): ``uid item item ...`` per line.

Read exactly as published: no filtering, and the release's item numbers kept when they are 1..max.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from padrec.data.dataset import PAD_TOKEN, SequenceDataset
from padrec.data.errors import DataError
from padrec.data.preprocess import split_by_lengths
from padrec.data.tables import read_text, require_file

__all__ = ["read_faerec_txt"]


def read_faerec_txt(path: str | Path, name: str | None = None) -> SequenceDataset:
    """Read a FAERec release file: one line per user, ``uid item item ...`` (spaces, ids >= 1).

    The file's item ids are kept as internal ids when they are exactly 1..max (so numbers match
    the release); otherwise they are mapped densely in increasing numeric order. The item
    table has no columns (the release ships no text). ``name`` defaults to the lower-cased stem.
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
    try:
        flat = np.array(tokens, dtype=np.int64)
    except ValueError:
        flat = None
    if flat is None or (flat < 1).any():
        for i, line in enumerate(lines):
            for j, tok in enumerate(line.split()[1:], start=2):
                if not tok.isdigit() or int(tok) < 1:
                    raise DataError(
                        f"{p}: line {i + 1}, field {j} (item id): expected an integer >= 1 separated "
                        f"by spaces, got {tok!r}"
                    )
    assert flat is not None
    dup = pd.Series(users).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"{p}: line {i + 1}, field 1 (user id): duplicate user id {users[i]!r}; expected one line per user"
        )
    present = np.bincount(flat)[1:] > 0
    ids_kept = bool(present.all())
    if ids_kept:  # ids are exactly 1..max
        internal, originals = flat, np.arange(1, len(present) + 1)
    else:
        originals = np.flatnonzero(present) + 1
        internal = np.cumsum(present)[flat - 1]
    n = len(originals)
    item_ids = np.empty(n + 1, dtype=object)
    item_ids[0] = PAD_TOKEN
    item_ids[1:] = [str(x) for x in originals]
    return SequenceDataset(
        name=name or p.stem.lower(),
        sequences=split_by_lengths(internal.astype(np.int64), lengths),
        user_ids=np.asarray(users, dtype=object),
        item_ids=item_ids,
        item_table=pd.DataFrame(index=pd.RangeIndex(n + 1)),
        source={"reader": "faerec_txt", "files": [str(p)], "ids_kept": ids_kept},
    )
