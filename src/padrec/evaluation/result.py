"""The result of an evaluation, :class:`EvalResult`, and its JSON (de)serialisation.

:func:`padrec.evaluation.evaluate` returns an :class:`EvalResult`: overall metrics, metrics by
frequency bucket, warm/median/cold group and head/tail, coverage, and the per-user ranks that
significance tests need. :meth:`EvalResult.to_json` / :meth:`EvalResult.from_json` write and read
it (NaN metrics of empty groups as ``null``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from padrec.io import read_json, write_json

__all__ = ["EvalResult"]


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    return obj


def _none_to_nan(obj: Any) -> Any:
    if obj is None:
        return float("nan")
    if isinstance(obj, dict):
        return {k: _none_to_nan(v) for k, v in obj.items()}
    return obj


@dataclass
class EvalResult:
    """Metrics of one evaluation, plus per-user arrays for significance tests.

    Attributes:
        overall: ``{"HR@K": ..., "NDCG@K": ...}`` over all users.
        by_bucket: ``{b: {metric: value, "users": n}}`` by frequency bucket of the target, 1..B.
        by_group: same, keyed ``warm`` / ``median`` / ``cold`` (group of the target).
        head_tail: same, keyed ``head`` / ``tail`` (tail = target not among the head items).
        by_popularity: same, keyed by FAERec's popularity group of the target (``1-4``, ``5-9``,
            ``10-19``, ``20-49``, ``50+`` interactions over whole sequences); flat names
            ``pop1-4/HR@10`` ...; empty in results written before it existed.
        coverage: ``Coverage@K`` and (with item stats) ``TailCoverage@K``.
        num_users: U; num_items: N.
        ks, history_handling, main_metric: the settings used.
        users: (U,) int64 user indices (``EvalSet.users``).
        targets: (U,) int64 target ids.
        ranks: (U,) int64 0-based target ranks; N = miss (removed or unrankable target).
        topk: (U, K_max) int64 top-K lists, best first, 0 = empty slot; kept in memory only
            (not written by :meth:`to_json`), ``None`` after :meth:`from_json`.
        seconds: wall time of the evaluation.
    Group metrics are NaN for an empty group (written as ``null`` in JSON).
    """

    overall: dict[str, float]
    by_bucket: dict[int, dict[str, float]]
    by_group: dict[str, dict[str, float]]
    head_tail: dict[str, dict[str, float]]
    coverage: dict[str, float]
    num_users: int
    num_items: int
    ks: list[int]
    history_handling: str
    main_metric: str
    users: np.ndarray
    targets: np.ndarray
    ranks: np.ndarray
    topk: np.ndarray | None = None
    seconds: float = 0.0
    by_popularity: dict[str, dict[str, float]] = field(default_factory=dict)

    def main(self, metric: str | None = None) -> float:
        """Value of ``metric`` (default: ``main_metric``).

        Accepts ``HR@K`` / ``NDCG@K`` (overall), ``Coverage@K`` / ``TailCoverage@K``, and a
        group-qualified ``warm/…``, ``median/…``, ``cold/…``, ``head/…``, ``tail/…`` or
        ``bucketB/…`` or ``popG/…`` (e.g. ``tail/NDCG@10``, ``bucket3/HR@10``, ``pop1-4/HR@10``).
        """
        name = metric or self.main_metric
        flat = self.flat_metrics()
        if name not in flat:
            raise KeyError(f"metric {name!r} not in this result; available: {', '.join(flat)}")
        return flat[name]

    def flat_metrics(self) -> dict[str, float]:
        """Every aggregate as one flat dict: ``NDCG@10``, ``Coverage@10``, ``tail/NDCG@10``,
        ``bucket3/HR@10``, ``cold/users`` ... (the input of :func:`~padrec.evaluation.aggregate`)."""
        out = dict(self.overall)
        out.update(self.coverage)
        scopes = (("", self.by_group), ("", self.head_tail), ("bucket", self.by_bucket), ("pop", self.by_popularity))
        for scope, rows in scopes:
            for key, row in rows.items():
                for m, v in row.items():
                    out[f"{scope}{key}/{m}"] = float(v)
        return out

    def to_dict(self, per_user: bool = True) -> dict[str, Any]:
        """Plain-JSON dict; ``per_user`` includes the users/targets/ranks arrays."""
        d: dict[str, Any] = {
            "overall": self.overall,
            "by_bucket": {str(b): row for b, row in self.by_bucket.items()},
            "by_group": self.by_group,
            "head_tail": self.head_tail,
            "by_popularity": self.by_popularity,
            "coverage": self.coverage,
            "num_users": self.num_users,
            "num_items": self.num_items,
            "ks": list(self.ks),
            "history_handling": self.history_handling,
            "main_metric": self.main_metric,
            "seconds": self.seconds,
        }
        d = _nan_to_none(d)
        if per_user:
            d["per_user"] = {
                "users": self.users.tolist(),
                "targets": self.targets.tolist(),
                "ranks": self.ranks.tolist(),
            }
        return d

    def to_json(self, path: str | Path, per_user: bool = True) -> None:
        """Write :meth:`to_dict` to ``path`` atomically (:func:`padrec.io.write_json`)."""
        write_json(path, self.to_dict(per_user=per_user))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        """Inverse of :meth:`to_dict` (``topk`` is not restored; per-user arrays empty if absent)."""
        pu = d.get("per_user") or {}

        def arr(key: str) -> np.ndarray:
            return np.asarray(pu.get(key, []), dtype=np.int64)

        return cls(
            overall=_none_to_nan(d["overall"]),
            by_bucket={int(b): _none_to_nan(row) for b, row in d["by_bucket"].items()},
            by_group=_none_to_nan(d["by_group"]),
            head_tail=_none_to_nan(d["head_tail"]),
            coverage=_none_to_nan(d["coverage"]),
            num_users=int(d["num_users"]),
            num_items=int(d["num_items"]),
            ks=[int(k) for k in d["ks"]],
            history_handling=d["history_handling"],
            main_metric=d["main_metric"],
            users=arr("users"),
            targets=arr("targets"),
            ranks=arr("ranks"),
            topk=None,
            seconds=float(d.get("seconds", 0.0)),
            by_popularity=_none_to_nan(d.get("by_popularity") or {}),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> EvalResult:
        """Read a result written by :meth:`to_json`.

        Raises:
            FileNotFoundError, padrec.io.FileFormatError: a missing, empty or invalid file.
        """
        return cls.from_dict(read_json(path, expect=dict))
