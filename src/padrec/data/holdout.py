"""Hold items out of a dataset entirely (cold-start / zero-shot simulation).

``data.holdout_items`` names a set of items (a seeded ``fraction`` of the catalogue, or an
explicit ``file`` of raw item ids); :func:`apply_holdout` then deletes every interaction with
them from every user's sequence and removes them from the catalogue: the item table and the
internal ids are renumbered compactly (1..N'), the remaining items keeping their relative order.
A user left with no interaction at all is removed (the readers never produce an empty sequence);
a user left with one or two items is kept and treated by the split protocol as any short user
(``pad``: dropped; ``faerec``: two items train only, one item is ignored). Preprocessing filters
(``min_user_interactions``, ``item_core``) are not re-run: they describe the full dataset.

The held-out items stay available on the reduced dataset (``dataset.held_out``: raw ids, their
former internal ids and their item-table rows with every text field), so they can be added back
later from their text alone. :func:`holdout_item_ids` tells which items a setting holds out
without building the reduced dataset.

The fraction sample does not depend on the catalogue's order nor on NumPy's random streams:
item ``i`` gets the key ``sha256("padrec-holdout:<seed>:<raw id>")`` and the ``k`` items with
the smallest keys are held out (``k = fraction × N`` rounded half up). So a seed gives the same
items on every machine and padrec version, another seed another set, and a smaller fraction
with the same seed a subset of a larger one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from padrec.data.dataset import PAD_TOKEN, HeldOutItems, SequenceDataset
from padrec.data.errors import DataError
from padrec.data.preprocess import split_by_lengths
from padrec.data.tables import read_text, require_file
from padrec.fingerprint import sha256_hex

__all__ = ["HeldOutItems", "HoldoutConfig", "apply_holdout", "holdout_item_ids", "read_holdout_file"]

log = logging.getLogger(__name__)

FIELD = "data.holdout_items"


@dataclass
class HoldoutConfig:
    """Which items to hold out of the dataset (``data.holdout_items``); set exactly one of
    ``fraction`` and ``file``.

    Attributes:
        fraction: in (0, 1): hold out a seeded uniform random sample of ``round(fraction × N)``
            of the catalogue's N items (at least one item, and at least one item kept).
        file: a UTF-8 text file of raw item ids, one per line (blank lines and surrounding
            spaces ignored); relative paths are read from the working directory.
        seed: seed of the ``fraction`` sample (unused with ``file``).
    """

    fraction: float | None = None
    file: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.fraction is None) == (not self.file):
            raise ValueError(
                "set exactly one of fraction (a share of the catalogue, in (0, 1)) and file (a list of raw "
                f"item ids, one per line); got fraction={self.fraction!r}, file={self.file!r}"
            )
        if self.fraction is not None and not (isinstance(self.fraction, (int, float)) and 0 < self.fraction < 1):
            raise ValueError(f"fraction must be in (0, 1) (exclusive), got {self.fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def describe(self) -> dict[str, Any]:
        """The setting as recorded in ``dataset.source``: only the fields in use."""
        if self.fraction is not None:
            return {"fraction": float(self.fraction), "seed": int(self.seed)}
        return {"file": str(Path(self.file).expanduser())}


def _as_config(config: HoldoutConfig | dict[str, Any]) -> HoldoutConfig:
    if isinstance(config, HoldoutConfig):
        return config
    if isinstance(config, dict):
        from padrec.config import from_dict

        return from_dict(HoldoutConfig, config, where=FIELD)
    raise TypeError(f"{FIELD}: expected a HoldoutConfig or a mapping, got {type(config).__name__}")


def _catalogue(source: SequenceDataset | Iterable[str], what: str) -> tuple[list[str], str]:
    """The raw item ids of ``source`` (no padding) and a name for messages."""
    if isinstance(source, SequenceDataset):
        if source.held_out is not None:
            raise DataError(
                f"dataset '{source.name}' already holds {len(source.held_out)} items out; pick the items from "
                "the full dataset (load it without data.holdout_items)"
            )
        return [str(x) for x in source.item_ids[1:]], f"dataset '{source.name}'"
    ids = [str(x) for x in source]
    if ids and ids[0] == PAD_TOKEN:
        ids = ids[1:]
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)
        raise DataError(f"{what}: the catalogue repeats item id {dup[dup.duplicated()].iloc[0]!r}")
    return ids, what


def read_holdout_file(path: str | Path, catalogue: Sequence[str] | None = None, where: str = "") -> list[str]:
    """The raw item ids listed in ``path`` (one per line), in file order.

    Raises :class:`DataError` naming the file and line for a missing or unreadable file, a file
    without ids, a repeated id or (given ``catalogue``) an id the catalogue lacks.
    """
    p = require_file(Path(path).expanduser(), f"{FIELD}.file (held-out item list)")
    text = read_text(p, f"{FIELD}.file (held-out item list)")
    ids: list[str] = []
    first_line: dict[str, int] = {}
    known = set(catalogue) if catalogue is not None else None
    for n, line in enumerate(text.splitlines(), start=1):
        item = line.strip()
        if not item:
            continue
        if item in first_line:
            raise DataError(
                f"{p}: line {n}: item id {item!r} is listed twice (first at line {first_line[item]}); "
                f"{FIELD}.file lists each held-out item once"
            )
        if known is not None and item not in known:
            raise DataError(
                f"{p}: line {n}: item id {item!r} is not in the catalogue of {where or 'the dataset'} "
                f"({len(known):,} items); {FIELD}.file lists raw item ids of the dataset, one per line"
            )
        first_line[item] = n
        ids.append(item)
    if not ids:
        raise DataError(f"{p}: {FIELD}.file (held-out item list) is empty; expected raw item ids, one per line")
    return ids


def _sample(ids: list[str], fraction: float, seed: int, where: str) -> list[str]:
    n = len(ids)
    k = math.floor(fraction * n + 0.5)
    if k < 1 or k > n - 1:
        raise DataError(
            f"{where}: {FIELD}.fraction = {fraction!r} of its {n:,} items holds out {k} item(s); "
            "expected a fraction that holds out at least one item and keeps at least one"
        )
    keys = sorted((sha256_hex(f"padrec-holdout:{seed}:{i}"), i) for i in ids)
    return [i for _, i in keys[:k]]


def holdout_item_ids(source: SequenceDataset | Iterable[str], config: HoldoutConfig | dict[str, Any]) -> list[str]:
    """The raw ids of the items ``config`` holds out of ``source``'s catalogue, in catalogue order.

    Args:
        source: the full dataset (loaded without ``holdout_items``) or its raw item ids (in
            any order; a leading ``"[PAD]"`` is skipped).
        config: a :class:`HoldoutConfig` or its mapping (as in YAML).

    The result depends only on the set of raw ids and the setting (see the module docstring),
    and equals ``load_dataset(cfg).held_out_item_ids()`` for the same setting. From a
    :class:`~padrec.data.loading.DataConfig` alone: :func:`padrec.data.loading.load_holdout_item_ids`.
    """
    cfg = _as_config(config)
    ids, where = _catalogue(source, "the item ids given")
    if not ids:
        raise DataError(f"{where}: no items to hold out from")
    if cfg.fraction is not None:
        chosen = set(_sample(ids, float(cfg.fraction), int(cfg.seed), where))
    else:
        chosen = set(read_holdout_file(cfg.file, ids, where))
        if len(chosen) == len(ids):
            raise DataError(
                f"{Path(cfg.file).expanduser()}: {FIELD}.file lists every one of the {len(ids):,} items of "
                f"{where}; at least one item must stay"
            )
    return [i for i in ids if i in chosen]


def apply_holdout(dataset: SequenceDataset, config: HoldoutConfig | dict[str, Any]) -> SequenceDataset:
    """A copy of ``dataset`` without the items ``config`` holds out (see the module docstring).

    The result's ``held_out`` lists them; ``source["holdout_items"]`` records the setting and
    the counts. ``dataset`` itself is not changed.
    """
    cfg = _as_config(config)
    held_ids = holdout_item_ids(dataset, cfg)
    n1 = len(dataset.item_ids)
    pos = pd.Index([str(x) for x in dataset.item_ids]).get_indexer(held_ids)
    held = np.zeros(n1, dtype=bool)
    held[pos] = True
    id_map = np.zeros(n1, dtype=np.int64)
    kept_rows = np.flatnonzero(~held)  # row 0 (padding) is never held out
    id_map[kept_rows] = np.arange(len(kept_rows), dtype=np.int64)

    lengths = dataset.lengths
    flat = (
        np.concatenate([np.asarray(s, dtype=np.int64) for s in dataset.sequences])
        if dataset.sequences
        else np.zeros(0, np.int64)
    )
    keep = ~held[flat]
    owner = np.repeat(np.arange(len(lengths)), lengths)
    new_lengths = np.bincount(owner[keep], minlength=len(lengths)).astype(np.int64)
    removed = int(len(flat) - keep.sum())
    users_kept = new_lengths > 0
    if not users_kept.any():
        raise DataError(f"dataset '{dataset.name}': {FIELD} removes every interaction ({len(held_ids)} items held out)")
    removed_users = [str(u) for u in np.asarray(dataset.user_ids, dtype=object)[~users_kept]]
    sequences = split_by_lengths(id_map[flat[keep]], new_lengths)
    sequences = [s for s, k in zip(sequences, users_kept) if k]

    table = dataset.item_table
    info = HeldOutItems(
        item_ids=held_ids,
        original_ids=pos.astype(np.int64),
        item_table=table.iloc[pos].reset_index(drop=True),
        id_map=id_map,
        config=cfg.describe(),
        removed_interactions=removed,
        removed_users=removed_users,
    )
    log.info(
        "dataset '%s': %d of %d items held out (%s); %d interactions and %d users with none left removed",
        dataset.name,
        len(held_ids),
        dataset.num_items,
        info.config,
        removed,
        len(removed_users),
    )
    return SequenceDataset(
        name=dataset.name,
        sequences=sequences,
        user_ids=np.asarray(dataset.user_ids, dtype=object)[users_kept],
        item_ids=np.asarray(dataset.item_ids, dtype=object)[kept_rows],
        item_table=table.iloc[kept_rows].reset_index(drop=True),
        source={**dataset.source, "holdout_items": info.summary()},
        held_out=info,
    )
