"""One entry point from a :class:`DataConfig` to a :class:`SequenceDataset`.

``DataConfig()`` loads the Prime Pantry copy shipped inside the package. Shared datasets
(``beauty``, ``food``, ``yelp``, ``games``) are found in the shared data folder:
``$PADREC_DATA_DIR`` when set, else ``../shared/data`` next to the working directory or next
to the repository. Paths in any supported format load with ``format="auto"``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from padrec.config import to_dict
from padrec.data.cache import cached_build
from padrec.data.dataset import SequenceDataset
from padrec.data.errors import DataError
from padrec.data.holdout import HoldoutConfig, apply_holdout, holdout_item_ids, read_holdout_file
from padrec.data.preprocess import PreprocessConfig
from padrec.data.readers import (
    read_faerec_txt,
    read_interactions,
    read_pad_csv,
    read_recbole_atomic,
    table_kind,
)

log = logging.getLogger(__name__)

Format = Literal["builtin", "pad_csv", "faerec_txt", "recbole_atomic", "interactions", "auto"]

BUILTIN_DATASETS = ("prime_pantry",)
PAD_HISTORY = "Prime_Pantry_cleaned_history.csv"
PAD_METADATA = "metadata_Prime_Pantry.csv"

# Shared datasets: name -> (format, path relative to the shared data folder, items path).
SHARED_DATASETS: dict[str, tuple[str, str, str]] = {
    "beauty": ("faerec_txt", "beauty_faerec/Beauty.txt", ""),
    "food": ("faerec_txt", "beauty_faerec/Food.txt", ""),
    "yelp": ("faerec_txt", "beauty_faerec/Yelp.txt", ""),
    "games": ("recbole_atomic", "games/Games.test.inter", "games/Games.item"),
}


@dataclass
class DataConfig:
    """Which dataset to load and how.

    Attributes:
        name: dataset name: ``prime_pantry`` (built in), a shared name (``beauty``, ``food``,
            ``yelp``, ``games``), or any label for a dataset given by ``path``.
        format: ``builtin`` (a dataset found by ``name`` alone: the packaged Prime Pantry
            or a shared dataset), ``pad_csv``, ``faerec_txt``, ``recbole_atomic``,
            ``interactions`` (your own CSV/TSV/Parquet) or ``auto`` (detected from ``path``;
            by ``name`` when ``path`` is empty).
        path: file or directory. pad_csv: the history CSV or its directory; faerec_txt: the
            ``.txt`` file; recbole_atomic: the ``.inter`` file or a directory; interactions:
            the interactions table.
        items_path: item table (metadata CSV, ``.item`` file or item table); found next to
            ``path`` when empty and the format has a conventional name for it.
        user_col, item_col, time_col, rating_col: interactions-table column names
            (``time_col`` empty = rows are already in time order; ``rating_col`` empty = none).
        item_id_col: id column of the item table (empty = ``item_col``).
        text_cols: item-table columns kept as text (empty = every column but the id).
        preprocess: filters and numbering for ``interactions`` (and RecBole interaction
            files); ``None`` = defaults for interactions, and "as published" for the
            released formats (which refuse preprocessing options).
        cache_dir: processed-dataset cache (empty = ``$PADREC_CACHE`` or ``~/.cache/padrec``).
        use_cache: reuse/write the processed cache.
        holdout_items: items removed from the dataset entirely (cold-start / zero-shot
            simulation; :mod:`padrec.data.holdout`): ``{fraction: 0.1, seed: 0}`` (a seeded
            sample of the catalogue) or ``{file: items.txt}`` (raw item ids, one per line).
            Every interaction with them leaves every sequence, the catalogue is renumbered
            compactly in its order, users left with no interaction are removed, and shorter
            users are left to the split protocol (``pad`` drops users under 3 items). Applied
            after loading, for every format, to the full dataset as read (or cached: the cache
            always holds the full dataset). The result's ``held_out`` lists the items (raw ids
            and item-table rows). ``None`` (default) = nothing held out.
    """

    name: str = "prime_pantry"
    format: Format = "builtin"
    path: str = ""
    items_path: str = ""
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str = ""
    item_id_col: str = ""
    text_cols: list[str] = field(default_factory=list)
    preprocess: PreprocessConfig | None = None
    cache_dir: str = ""
    use_cache: bool = True
    holdout_items: HoldoutConfig | None = None


def builtin_dir(name: str = "prime_pantry") -> Path:
    """Directory of a dataset shipped inside the package."""
    if name not in BUILTIN_DATASETS:
        raise DataError(f"no built-in dataset '{name}'; built in: {', '.join(BUILTIN_DATASETS)}")
    path = Path(str(resources.files("padrec"))) / "data" / "builtin" / name
    if not (path / PAD_HISTORY).is_file():
        raise DataError(f"{path}: the packaged {name} files are missing (broken installation?)")
    return path


def _candidate_data_dirs() -> list[Path]:
    repo_root = Path(__file__).resolve().parents[3]
    return [Path.cwd().parent / "shared" / "data", repo_root.parent / "shared" / "data"]


def shared_data_dir(required: bool = True) -> Path | None:
    """The shared data folder: ``$PADREC_DATA_DIR``, else ``../shared/data`` beside the cwd or the repo."""
    env = os.environ.get("PADREC_DATA_DIR")
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p
        if required:
            raise DataError(f"PADREC_DATA_DIR={env} is not a directory")
        return None
    tried = _candidate_data_dirs()
    for p in tried:
        if p.is_dir():
            return p.resolve()
    if required:
        raise DataError(
            "shared data folder not found; tried "
            + ", ".join(str(p) for p in tried)
            + " (set PADREC_DATA_DIR to the folder holding beauty_faerec/, games/, ...)"
        )
    return None


def _shared(name: str) -> tuple[str, Path, Path | None]:
    fmt, rel, items_rel = SHARED_DATASETS[name]
    root = shared_data_dir()
    assert root is not None
    path = root / rel
    if not path.exists():
        raise DataError(f"{path}: shared dataset '{name}' not found in {root}")
    return fmt, path, (root / items_rel if items_rel else None)


def detect_format(path: str | Path) -> str:
    """Format of a file or directory: ``pad_csv``, ``faerec_txt``, ``recbole_atomic`` or ``interactions``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.is_dir():
        if list(p.glob("*_cleaned_history.csv")):
            return "pad_csv"
        if list(p.glob("*.inter")):
            return "recbole_atomic"
        if list(p.glob("*.txt")):
            return "faerec_txt"
        tables = [q for q in p.iterdir() if q.is_file() and _is_table(q)]
        if tables:
            return "interactions"
        raise DataError(
            f"{p}: cannot tell the dataset format of this directory (expected a PAD "
            "*_cleaned_history.csv, RecBole *.inter, FAERec *.txt or an interactions table)"
        )
    suffix = p.suffix.lower()
    if suffix == ".txt":
        return "faerec_txt"
    if suffix in (".inter", ".item"):
        return "recbole_atomic"
    if _is_table(p):
        if table_kind(p) != "parquet":
            with open(p, encoding="utf-8", errors="replace") as fh:
                header = fh.readline().strip().split(",")
            if "history" in header:
                return "pad_csv"
        return "interactions"
    raise DataError(
        f"{p}: cannot tell the dataset format from the extension '{suffix}' (expected .csv, .tsv, "
        ".parquet, .txt or .inter)"
    )


def _is_table(p: Path) -> bool:
    try:
        table_kind(p)
        return True
    except DataError:
        return False


def _pick(directory: Path, pattern: str, name: str, what: str) -> Path:
    """The file matching ``pattern`` in ``directory``; with several, the one whose stem is ``name``."""
    found = sorted(directory.glob(pattern))
    if len(found) == 1:
        return found[0]
    for f in found:
        if f.name.split(".")[0].lower() == name.lower():
            return f
    if not found:
        raise DataError(f"{directory}: no {what} ({pattern})")
    raise DataError(
        f"{directory}: several {what} files ({', '.join(f.name for f in found)}); set name to one "
        "of their stems or give the file as path"
    )


def _plan(cfg: DataConfig) -> tuple[str, list[Path], dict[str, Any], Callable[[], SequenceDataset]]:
    """Resolve ``cfg`` to (dataset name, input files, reader options, build function)."""
    fmt, name = cfg.format, cfg.name
    path = Path(cfg.path).expanduser() if cfg.path else None
    items = Path(cfg.items_path).expanduser() if cfg.items_path else None

    if path is None:
        if name in BUILTIN_DATASETS and fmt in ("builtin", "auto", "pad_csv"):
            d = builtin_dir(name)
            fmt, path, items = "pad_csv", d / PAD_HISTORY, d / PAD_METADATA
        elif name in SHARED_DATASETS:
            shared_fmt, path, shared_items = _shared(name)
            if fmt not in ("builtin", "auto", shared_fmt):
                raise DataError(f"shared dataset '{name}' has format '{shared_fmt}', not '{fmt}'")
            fmt, items = shared_fmt, items or shared_items
        else:
            known = ", ".join([*BUILTIN_DATASETS, *SHARED_DATASETS])
            raise DataError(f"dataset '{name}' needs a path (known names: {known})")
    elif fmt == "builtin":
        raise DataError(f"{path}: format 'builtin' takes no path; use 'auto' or the file's format")
    elif fmt == "auto":
        fmt = detect_format(path)

    if cfg.preprocess is not None and fmt in ("pad_csv", "faerec_txt"):
        raise DataError(
            f"{path}: format '{fmt}' is a released dataset read as published; preprocess options "
            "apply to 'interactions' and RecBole interaction files"
        )
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")

    if fmt == "pad_csv":
        if path.is_dir():
            path = _pick(path, "*_cleaned_history.csv", name, "PAD history CSV")
        if items is None:
            items = _pick(path.parent, "metadata_*.csv", name, "PAD metadata CSV")
        files = [path, items]
        hist, meta = path, items
        return name, files, {"reader": fmt}, lambda: read_pad_csv(hist, meta, name=name)

    if fmt == "faerec_txt":
        if path.is_dir():
            path = _pick(path, "*.txt", name, "FAERec sequence file")
        txt = path
        return name, [txt], {"reader": fmt}, lambda: read_faerec_txt(txt, name=name)

    if fmt == "recbole_atomic":
        if path.is_dir():
            pattern = "*.test.inter" if list(path.glob("*.test.inter")) else "*.inter"
            path = _pick(path, pattern, name, "RecBole .inter file")
        elif path.suffix == ".item":
            items = items or path
            stem = path.name.split(".")[0]
            cands = sorted(path.parent.glob(stem + ".test.inter")) or sorted(path.parent.glob(stem + ".inter"))
            if not cands:
                raise DataError(f"{path}: no {stem}.test.inter or {stem}.inter next to this .item file")
            path = cands[0]
        if items is None:
            stem = path.name.split(".")[0]
            cand = path.parent / f"{stem}.item"
            items = cand if cand.is_file() else None
        inter, item_file, pre = path, items, cfg.preprocess
        files = [inter] + ([item_file] if item_file else [])
        opts = {"reader": fmt, "preprocess": to_dict(pre)}
        return name, files, opts, lambda: read_recbole_atomic(item_file, inter, name=name, preprocess=pre)

    if fmt == "interactions":
        if path.is_dir():
            tables = sorted(q for q in path.iterdir() if q.is_file() and _is_table(q))
            inter_files = [q for q in tables if "inter" in q.name.lower()] or tables
            path = inter_files[0] if len(inter_files) == 1 else _pick(path, "*inter*", name, "interactions table")
            if items is None:
                item_files = [q for q in tables if "item" in q.name.lower() and q != path]
                items = item_files[0] if len(item_files) == 1 else None
        pre = cfg.preprocess or PreprocessConfig()
        inter, item_file = path, items
        opts = {
            "reader": fmt,
            "user_col": cfg.user_col,
            "item_col": cfg.item_col,
            "time_col": cfg.time_col,
            "rating_col": cfg.rating_col,
            "item_id_col": cfg.item_id_col,
            "text_cols": list(cfg.text_cols),
            "preprocess": to_dict(pre),
        }
        files = [inter] + ([item_file] if item_file else [])
        return (
            name,
            files,
            opts,
            lambda: read_interactions(
                inter,
                item_file,
                user_col=cfg.user_col,
                item_col=cfg.item_col,
                time_col=cfg.time_col or None,
                rating_col=cfg.rating_col or None,
                item_id_col=cfg.item_id_col or None,
                text_cols=list(cfg.text_cols) or None,
                preprocess=pre,
                name=name,
            ),
        )

    raise DataError(f"unknown data format '{fmt}'")


def load_dataset(config: DataConfig | None = None) -> SequenceDataset:
    """Load the dataset ``config`` describes (default: the packaged Prime Pantry).

    With ``use_cache`` the processed dataset is read from / written to the cache (see
    :mod:`padrec.data.cache`); inputs are fingerprinted by content, so edits are noticed.
    With ``holdout_items`` the items it names are then removed (:func:`apply_holdout`); the
    cache holds the full dataset, so its entries and keys are the same with and without it.
    """
    cfg = config or DataConfig()
    name, files, options, build = _plan(cfg)
    for f in files:
        if not Path(f).is_file():
            raise DataError(f"{f}: input file not found")
    if cfg.holdout_items is not None and cfg.holdout_items.file:
        read_holdout_file(cfg.holdout_items.file)  # a missing or malformed list fails before the data is read
    if not cfg.use_cache:
        dataset = build()
    else:
        dataset = cached_build(name, files, options, build, cfg.cache_dir or None)
    if cfg.holdout_items is not None:
        dataset = apply_holdout(dataset, cfg.holdout_items)
    return dataset


def load_holdout_item_ids(config: DataConfig) -> list[str]:
    """Raw ids of the items ``config.holdout_items`` holds out, in catalogue order, from the full
    dataset (loaded without them, from the processed cache when there is one); the same list as
    ``load_dataset(config).held_out_item_ids()``. :class:`DataError` when nothing is held out."""
    if config.holdout_items is None:
        raise DataError(f"dataset '{config.name}': data.holdout_items is not set, so no item is held out")
    full = load_dataset(dataclasses.replace(config, holdout_items=None))
    return holdout_item_ids(full, config.holdout_items)


def resolve_dataset(spec: str) -> DataConfig:
    """Turn a CLI dataset argument into a :class:`DataConfig`.

    ``spec`` is a built-in name (``prime_pantry``), a shared name (``beauty``, ``food``,
    ``yelp``, ``games``) or a path to a file or directory in a supported format (detected).
    """
    key = spec.strip()
    if key.lower() in BUILTIN_DATASETS:
        return DataConfig(name=key.lower(), format="builtin")
    if key.lower() in SHARED_DATASETS:
        return DataConfig(name=key.lower(), format="auto")
    p = Path(key).expanduser()
    if not p.exists():
        known = ", ".join([*BUILTIN_DATASETS, *SHARED_DATASETS])
        raise DataError(f"'{spec}' is neither a known dataset ({known}) nor an existing file or directory")
    fmt = detect_format(p)
    stem = (p.name if p.is_dir() else p.name.split(".")[0]) or "dataset"
    return DataConfig(name=stem.lower(), format=fmt, path=str(p))  # type: ignore[arg-type]
