"""Encoder that supplies a user's ready-made item matrix, aligned to the dataset's item ids.

The matrix is a ``.npy`` file (read with ``allow_pickle=False``) or a ``.safetensors`` file;
the id map says which row belongs to which original item id. Accepted id maps:

* JSON object ``{"<item id>": row, ...}``;
* JSON list ``["<item id of row 0>", "<item id of row 1>", ...]``;
* JSON object with an ``"item_ids"`` list (what ``padrec encode --output`` writes; a
  ``"[PAD]"`` entry is skipped);
* CSV with a header: two columns (item id, row) or one column (item ids in row order).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from padrec.data.dataset import PAD_TOKEN
from padrec.fingerprint import file_fingerprint
from padrec.io import FileFormatError, read_json
from padrec.text.encoders import ENCODERS, TextEncoder, l2_normalize
from padrec.text.errors import TextError


@dataclass
class PrecomputedConfig:
    """Options of the ``precomputed`` encoder.

    Attributes:
        path: the matrix, ``.npy`` or ``.safetensors`` (rows x D).
        ids: the id map (``.json`` or ``.csv``); ``""`` = ``<path without suffix>.json``.
        tensor: tensor name inside a ``.safetensors`` file; ``""`` = the only tensor, or the
            one named ``embeddings``.
        missing: dataset items absent from the id map: ``error`` (default) or ``zero`` rows.
        dim: expected width; 0 accepts any.
        normalize: L2-normalise rows after loading.
    """

    path: str = ""
    ids: str = ""
    tensor: str = ""
    missing: Literal["error", "zero"] = "error"
    dim: int = 0
    normalize: bool = False


def _read_matrix(path: Path, tensor: str) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")
        except ValueError as exc:
            raise TextError(f"{path}: cannot read as a numeric .npy array without pickle ({exc})") from exc
        except OSError as exc:
            raise TextError(f"{path}: cannot read .npy file ({exc})") from exc
        if arr.dtype.kind not in "fiu":
            raise TextError(f"{path}: expected a numeric array, found dtype {arr.dtype}")
        return arr
    if suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                names = list(fh.keys())
                if tensor:
                    name = tensor
                elif len(names) == 1:
                    name = names[0]
                elif "embeddings" in names:
                    name = "embeddings"
                else:
                    raise TextError(f"{path}: holds tensors {names}; say which one with tensor=<name>")
                if name not in names:
                    raise TextError(f"{path}: no tensor named {name!r}; it holds {names}")
                t = fh.get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise TextError(f"{path}: not a readable safetensors file ({exc})") from exc
        if t.dtype == torch.bool or t.is_complex():
            raise TextError(f"{path}: tensor {name!r} is not numeric ({t.dtype})")
        return t.float().numpy()
    raise TextError(f"{path}: unsupported matrix format {suffix!r}; use .npy or .safetensors")


def _read_id_map(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise TextError(f"{path}: id map not found (config 'ids'; JSON or CSV, original item id -> row)")
    suffix = path.suffix.lower()
    out: dict[str, int] = {}

    def put(item: Any, row: Any, where: str) -> None:
        key = str(item)
        if key == PAD_TOKEN:
            return
        try:
            r = int(row)
        except (TypeError, ValueError):
            raise TextError(f"{path}: {where}: row {row!r} is not an integer") from None
        if key in out and out[key] != r:
            raise TextError(f"{path}: {where}: item id {key!r} mapped to rows {out[key]} and {r}")
        out[key] = r

    if suffix == ".json":
        try:
            data = read_json(path)
        except FileFormatError as exc:
            raise TextError(str(exc)) from exc
        except OSError as exc:
            raise TextError(f"{path}: cannot read the id map ({exc})") from exc
        if isinstance(data, dict) and isinstance(data.get("item_ids"), list):
            data = data["item_ids"]
        if isinstance(data, list):
            for row, item in enumerate(data):
                put(item, row, f"entry {row}")
        elif isinstance(data, dict):
            for item, row in data.items():
                put(item, row, f"key {item!r}")
        else:
            raise TextError(f"{path}: expected a JSON object (id -> row) or list of ids, got {type(data).__name__}")
    elif suffix == ".csv":
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise TextError(f"{path}: cannot read CSV ({exc})") from exc
        if not rows:
            raise TextError(f"{path}: empty CSV; expected a header then 'item_id,row' lines")
        header, body = rows[0], rows[1:]
        if len(header) not in (1, 2):
            raise TextError(f"{path}: expected 1 column (ids in row order) or 2 (item id, row), header is {header}")
        for line_no, rec in enumerate(body, start=2):
            if not rec:
                continue
            if len(rec) != len(header):
                raise TextError(f"{path}: line {line_no}: expected {len(header)} field(s), got {len(rec)}")
            if len(header) == 1:
                put(rec[0], line_no - 2, f"line {line_no}")
            else:
                put(rec[0], rec[1], f"line {line_no}")
    else:
        raise TextError(f"{path}: unsupported id map format {suffix!r}; use .json or .csv")
    if not out:
        raise TextError(f"{path}: the id map is empty")
    return out


@ENCODERS.register("precomputed")
class PrecomputedEncoder(TextEncoder):
    """A user-supplied item matrix plus id map, re-ordered to the dataset's internal ids."""

    config_class = PrecomputedConfig
    config: PrecomputedConfig
    produces = "matrix"

    def _paths(self) -> tuple[Path, Path]:
        if not self.config.path:
            raise TextError("precomputed encoder: set 'path' to a .npy or .safetensors matrix")
        path = Path(self.config.path).expanduser()
        if not path.is_file():
            raise TextError(f"{path}: precomputed matrix not found")
        ids = Path(self.config.ids).expanduser() if self.config.ids else path.with_suffix(".json")
        return path, ids

    def identity(self) -> dict[str, Any]:
        path, ids = self._paths()
        return {
            "encoder": "precomputed",
            "path": str(path.resolve()),
            "revision": file_fingerprint(path)[:16],
            "ids": str(ids.resolve()),
            "normalize": self.config.normalize,
            "dtype": "float32",
        }

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        raise TextError("the precomputed encoder does not encode texts; it supplies a finished item matrix")

    def item_matrix(self, item_ids: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Rows for ``item_ids`` (length N+1, entry 0 padding) -> ``((N+1, D) float32, missing ids)``.

        Raises:
            TextError: unreadable files, rows out of range, a width other than ``dim``,
                NaN/inf rows, or items absent from the id map when ``missing="error"``.
        """
        path, ids_path = self._paths()
        matrix = _read_matrix(path, self.config.tensor)
        if matrix.ndim != 2 or matrix.shape[1] < 1:
            raise TextError(f"{path}: expected a 2-D matrix (rows x D), got shape {tuple(matrix.shape)}")
        rows, dim = matrix.shape
        if self.config.dim and dim != self.config.dim:
            raise TextError(f"{path}: matrix width {dim} does not match the configured dim {self.config.dim}")
        id_map = _read_id_map(ids_path)
        bad = {k: r for k, r in id_map.items() if not 0 <= r < rows}
        if bad:
            sample = list(bad.items())[:5]
            raise TextError(f"{ids_path}: {len(bad)} row number(s) outside the matrix's {rows} rows, e.g. {sample}")
        n = len(item_ids) - 1
        out = np.zeros((n + 1, dim), dtype=np.float32)
        missing: list[int] = []
        src_rows: list[int] = []
        dst_rows: list[int] = []
        for i in range(1, n + 1):
            r = id_map.get(str(item_ids[i]))
            if r is None:
                missing.append(i)
            else:
                src_rows.append(r)
                dst_rows.append(i)
        if len(missing) == n:
            raise TextError(
                f"{ids_path}: none of the dataset's {n} item ids is in the id map "
                f"(first dataset ids {[str(x) for x in item_ids[1:4]]}, "
                f"first map ids {list(id_map)[:3]})"
            )
        if missing and self.config.missing == "error":
            sample = [str(item_ids[i]) for i in missing[:10]]
            raise TextError(
                f"{ids_path}: {len(missing)} of {n} dataset items have no row, e.g. {sample}; "
                f"add them, or set missing=zero to give them zero rows"
            )
        if src_rows:
            out[dst_rows] = np.asarray(matrix[np.asarray(src_rows)], dtype=np.float32)
        nonfinite = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(nonfinite):
            sample = [str(item_ids[i]) for i in nonfinite[:10]]
            raise TextError(f"{path}: {len(nonfinite)} row(s) contain NaN/inf, for items {sample}")
        if self.config.normalize:
            out = l2_normalize(out)
        return out, missing
