"""Generated texts kept per (trained weights, sampling settings, prompt).

CALRec's inference is dominated by generation; the BM25 step after it is cheap. Keeping the
texts lets a run be evaluated again, or re-ranked with other retrieval settings, without
generating again. Entries live in memory and, with a directory, in one JSON-lines file per
weights fingerprint (appended as they are made; a torn last line from an interrupted run is
skipped when read).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


def weights_fingerprint(module: nn.Module, identity: dict[str, Any]) -> str:
    """Hash of the parameters ``module`` trains (and of the base model's identity)."""
    h = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    for name, p in module.named_parameters():
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class GenerationCache:
    """Texts generated per prompt for one weights fingerprint; ``directory=None`` keeps them
    in memory only."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.fingerprint: str | None = None
        self.entries: dict[str, list[list[Any]]] = {}

    def use(self, fingerprint: str) -> None:
        """Switch to the entries of ``fingerprint`` (read from disk the first time)."""
        if fingerprint == self.fingerprint:
            return
        self.fingerprint, self.entries = fingerprint, {}
        path = self._path()
        if path is None or not path.exists():
            return
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row["samples"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("%s:%d: skipping an unreadable cache line (interrupted write?)", path, n)

    def _path(self) -> Path | None:
        if self.directory is None or self.fingerprint is None:
            return None
        return self.directory / f"{self.fingerprint[:24]}.jsonl"

    @staticmethod
    def key(prompt: list[int], settings: dict[str, Any]) -> str:
        return hashlib.sha1(json.dumps([prompt, settings], sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> list[list[Any]] | None:
        """The cached ``[[text, mean log-likelihood], ...]`` of a prompt, or None."""
        return self.entries.get(key)

    def put(self, items: dict[str, list[list[Any]]]) -> None:
        """Add entries (and append them to the file)."""
        self.entries.update(items)
        path = self._path()
        if path is None or not items:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps({"key": k, "samples": v}) + "\n" for k, v in items.items()))
