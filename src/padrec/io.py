"""The one place for file output and JSON: atomic writes and JSON read with clear errors.

Every file padrec writes goes through :func:`atomic_path`: the content is written to a
temporary file ``.<name>.<random>.tmp`` in the target's directory and renamed onto the target
with :func:`os.replace` only when writing succeeded, so a reader (or a crash) never sees half a
file, and a failed write leaves neither a temporary file nor a damaged target behind.
Temporary files are created with the usual permissions (``0o666`` less the umask).

JSON is written as :func:`write_json` does (indent 2, trailing newline, ``default=str`` for
values JSON lacks, such as paths) and read with :func:`read_json`, whose errors name the file
and say what was expected (:class:`FileFormatError`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "FileFormatError",
    "atomic_path",
    "read_json",
    "write_bytes",
    "write_json",
    "write_text",
]


class FileFormatError(ValueError):
    """A file exists but does not hold what was expected.

    The message starts with the file's path and says what was expected, e.g.
    ``runs/x/model.json: not valid JSON (line 3, column 5: Expecting ',' delimiter)``.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reserve_temporary(path: Path) -> Path:
    """Create an empty, exclusive temporary file next to ``path`` and return its path."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path.parent}: could not create a temporary file for {path.name}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The temporary file ``.<name>.<random>.tmp`` exists (empty) when the block starts, in the
    same directory as ``path`` (created if missing), so the final :func:`os.replace` is atomic.
    If the block raises (including ``KeyboardInterrupt``), the temporary file is removed and
    ``path`` is left exactly as it was.

    >>> with atomic_path("out/weights.safetensors") as tmp:
    ...     save_file(tensors, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _reserve_temporary(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # writers such as safetensors create 0600 files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent directories created); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (parent directories created); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; returns the path.

    Format: ``indent=2``, keys in the order given, a trailing newline, values JSON cannot hold
    written as ``str(value)`` (paths, dates). NaN/inf are written as ``NaN``/``Infinity`` as
    :mod:`json` does; convert them first where strict JSON is needed.
    """
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def _json_type_name(expect: type | tuple[type, ...]) -> str:
    names = {dict: "a JSON object", list: "a JSON list", str: "a JSON string", int: "a JSON number"}
    kinds = expect if isinstance(expect, tuple) else (expect,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def read_json(path: str | Path, expect: type | tuple[type, ...] | None = None) -> Any:
    """Read a JSON file.

    Args:
        path: the file.
        expect: if given, the type(s) the top-level value must have (``dict`` for an object,
            ``list`` for a list).

    Raises:
        FileNotFoundError: no such file (the message starts with the path).
        FileFormatError: the file is empty, not UTF-8 text, not valid JSON (truncated, say;
            line and column given), or its top-level value is not of type ``expect``.
        OSError: it could not be read (permissions, a directory...).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found (expected a JSON file)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(path, f"not UTF-8 text (byte {exc.start}); expected a JSON file") from None
    if not text.strip():
        raise FileFormatError(path, "empty file; expected JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(
            path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); truncated or damaged?"
        ) from exc
    if expect is not None and not isinstance(data, expect):
        raise FileFormatError(path, f"expected {_json_type_name(expect)}, got a JSON {type(data).__name__}")
    return data
