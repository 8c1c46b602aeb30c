"""A run directory's life: claimed for a run, marked complete at the end, checked when loaded.

``status.json`` says ``training`` from the moment a run starts writing and ``complete`` once
``results.json`` (written last) is in place; a directory marked ``training`` is an interrupted
run, which ``padrec train`` with the same config resumes and which ``evaluate`` / ``recommend``
refuse with that advice. Directories from padrec versions without ``status.json`` count as
complete. Temporaries left by a killed writer (``.NAME.*.tmp``) are removed when a run starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from padrec.io import read_json, write_json

log = logging.getLogger(__name__)

STATUS = "status.json"
# What makes two runs the same run: the method and the data it is trained and evaluated on.
IDENTITY_KEYS = ("method", "data", "split", "stats")


class IncompleteRunError(RuntimeError):
    """A run directory whose training did not finish."""


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any], sections: tuple[str, ...] | None = None) -> list[str]:
    """``key: old -> new`` for every differing leaf (of ``sections`` only, when given)."""
    if sections is not None:
        old = {k: old.get(k) for k in sections}
        new = {k: new.get(k) for k in sections}
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def claim(
    run_dir: Path, config: dict[str, Any], complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> list[str]:
    """Start (or continue) a run in ``run_dir``: refuse a directory holding a different run
    (another method or data), remove stale temporaries, mark the directory ``training`` and
    write ``config.json``. Returns the settings that changed since the directory's last run
    (empty for a new directory), for the caller to report.

    ``complete`` fills a saved config with today's defaults before the comparison, so that a
    setting added to padrec since the directory was written (absent there, at its default
    now) is not a difference; a saved config it cannot read is compared as it is."""
    run_dir = Path(run_dir)
    changes: list[str] = []
    previous = run_dir / "config.json"
    if previous.exists():
        old = read_json(previous, expect=dict)
        if complete is not None:
            try:
                old = complete(old)
            except Exception:  # noqa: BLE001 - an unreadable old config is compared raw
                pass
        other = config_changes(old, config, IDENTITY_KEYS)
        if other:
            raise ValueError(
                f"{run_dir} holds a different run ({'; '.join(other[:4])}{' ...' if len(other) > 4 else ''}); "
                "choose another --output or --name, or delete the directory"
            )
        ignore = ("name", "output_dir")
        changes = [c for c in config_changes(old, config) if c.split(":", 1)[0] not in ignore]
    run_dir.mkdir(parents=True, exist_ok=True)
    for tmp in run_dir.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    write_json(run_dir / STATUS, {"status": "training", "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_json(run_dir / "config.json", config)
    return changes


def mark_complete(run_dir: Path) -> None:
    """Mark ``run_dir`` complete (after every result file is written)."""
    write_json(Path(run_dir) / STATUS, {"status": "complete", "since": time.strftime("%Y-%m-%dT%H:%M:%S")})


def check_complete(run_dir: Path) -> None:
    """Raise :class:`IncompleteRunError` when ``run_dir`` is marked as still training."""
    path = Path(run_dir) / STATUS
    if path.exists() and read_json(path, expect=dict).get("status") != "complete":
        raise IncompleteRunError(
            f"{run_dir}: the run did not finish (status.json says training); run `padrec train` with the same "
            "config and output directory to resume it"
        )
