"""Full-ranking evaluation of any ``score_all``-style function over an :class:`EvalSet`.

Users are scored in chunks of ``EvalConfig.batch_size`` so that at most
``batch_size × (N+1)`` scores exist at once; by default the chunk size follows from the memory
free on the device (:func:`auto_chunk_users`), so a catalogue of a million items is ranked in
chunks of a few hundred users where one of ten thousand items takes thousands. For each user the evaluator keeps the 0-based
rank of the target and its top-``K_max`` list; metrics are computed from these afterwards
(:mod:`padrec.evaluation.metrics`). Ordering rule (deterministic, also for exact ties):
items are ordered by score, highest first, and equal scores by item id, smallest first.
So ``rank = #{i: s_i > s_t} + #{i < t: s_i = s_t}``, and the top-K lists follow the same
order, which makes ``rank < K`` exactly "the target is in the top-K list".
Items scored ``-inf`` or NaN are unrankable: they never enter a top-K list, and a target
scored so (including a target removed as a seen item) gets ``rank = N``, a miss.

This module holds :class:`EvalConfig` and :func:`evaluate`; the result type
:class:`~padrec.evaluation.result.EvalResult` lives in :mod:`padrec.evaluation.result` and is
re-exported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from padrec.config import setting
from padrec.data.protocols import EvalSet
from padrec.data.stats import ItemStats
from padrec.evaluation.metrics import parse_metric, summarize
from padrec.evaluation.result import EvalResult

__all__ = ["EvalConfig", "EvalResult", "ScoreFn", "auto_chunk_users", "evaluate"]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]

_GROUP_PREFIXES = ("warm", "median", "cold", "head", "tail")
_CPU_BLOCK_ROWS = 128
_CPU_BLOCK_BYTES = 8 << 20  # a row block's scores fit in a CPU's L2/L3 share


@dataclass
class EvalConfig:
    """How to rank and what to report.

    Attributes:
        ks: cut-offs K for HR@K, NDCG@K and coverage (each >= 1 and <= N at evaluation).
        history_handling: what happens to the items the user saw before the target (the
            whole prior history, the target included when it is a repeat):
            ``remove`` (PAD release): excluded from the ranking, so a repeat target always misses;
            ``zero`` (FAERec release quirk): their scores are set to 0, not removed;
            ``none`` (RecBole): left in; only the padding column is excluded.
        batch_size: users scored per chunk; peak memory is about ``batch_size × (N+1)`` floats
            times a few copies. 0 (default) = chosen from the free memory of the device
            (:func:`auto_chunk_users`). It cannot change a result, so it stays out of fingerprints.
        users: test a fixed random sample of this many users (0 = all), drawn with
            ``users_seed``, for methods too slow to rank every user (CALRec generates text per
            user); results then say so and carry 95% confidence intervals over users. Only the
            final test evaluation reads it (validation samples with ``train.valid_users``).
        users_seed: seed of that sample (the same users for every method and seed of a comparison).

    The metric a run monitors and reports first is ``train.monitor`` (one field for both).
    """

    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    history_handling: Literal["remove", "zero", "none"] = "remove"
    batch_size: int = setting(0, fingerprint=False)
    users: int = setting(0, fingerprint=False)
    users_seed: int = setting(0, fingerprint=False)

    def __post_init__(self) -> None:
        if not self.ks or any(int(k) < 1 for k in self.ks):
            raise ValueError(f"ks must be a non-empty list of positive integers, got {self.ks}")
        self.ks = sorted({int(k) for k in self.ks})
        if self.history_handling not in ("remove", "zero", "none"):
            raise ValueError(f"history_handling must be remove, zero or none, got {self.history_handling!r}")
        if self.batch_size < 0:
            raise ValueError(f"batch_size must be >= 1 (or 0 = from the free memory), got {self.batch_size}")
        if self.users < 0:
            raise ValueError(f"users must be >= 0 (0 = all), got {self.users}")


# Bytes per score in a chunk: the method's float32 scores, the ranking's masked working copy of
# a row block, comparison masks, and the method's own intermediates (a fused model adds its
# experts' scores): a generous 4 float32 copies.
_BYTES_PER_SCORE = 16
_MAX_AUTO_USERS = 2048
_MEMORY_SHARE = 0.25


def auto_chunk_users(num_items: int, device: torch.device, free_bytes: int | None = None) -> int:
    """Users per evaluation chunk so that the chunk's scores (users × (N+1), with working copies)
    take at most a quarter of the memory free on ``device``: between 1 and 2048.

    ``free_bytes`` overrides the measurement (:func:`padrec.devices.free_memory_bytes`).
    Prime Pantry (8,348 columns) and Games (16,860) get 2048 users on any machine with a few GB
    free; a million items on a machine with 20 GB free, about 300.
    """
    from padrec.devices import free_memory_bytes

    free = free_bytes if free_bytes is not None else free_memory_bytes(device)
    if free is None:
        free = 4 << 30
    users = int(_MEMORY_SHARE * free // (max(1, num_items + 1) * _BYTES_PER_SCORE))
    return max(1, min(_MAX_AUTO_USERS, users))


def _split_qualified(name: str) -> tuple[str, str]:
    """``"tail/NDCG@10"`` -> ``("tail", "NDCG@10")``; ``"NDCG@10"`` -> ``("", "NDCG@10")``."""
    scope, _, metric = name.rpartition("/")
    return scope, metric


def check_metric_name(name: str, ks: list[int]) -> None:
    """Raise ValueError unless ``name`` (e.g. ``NDCG@10``, ``tail/HR@20``) is a metric an
    evaluation with cut-offs ``ks`` reports."""
    scope, metric = _split_qualified(name)
    kind, k = parse_metric(metric)
    if k not in ks:
        raise ValueError(f"metric {name!r}: K={k} is not among ks {ks}")
    if scope and scope not in _GROUP_PREFIXES and not (scope.startswith("bucket") and scope[6:].isdigit()):
        raise ValueError(f"metric {name!r}: unknown group {scope!r} (use warm, median, cold, head, tail or bucketB)")
    if scope and kind not in ("HR", "NDCG"):
        raise ValueError(f"metric {name!r}: only HR and NDCG are reported per group")


def _rank_chunk(
    scores: torch.Tensor,
    targets: torch.Tensor,
    seen_rows: torch.Tensor,
    seen_cols: torch.Tensor,
    handling: str,
    kmax: int,
    with_topk: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ranks (B,) and top-``kmax`` lists (B, kmax) of one chunk of scores (B, N+1).

    ``scores`` is not modified; ``seen_rows``/``seen_cols`` index the seen (user, item) pairs.
    ``with_topk=False`` returns ``None`` for the lists (the ranks alone give HR and NDCG).
    """
    n1 = scores.shape[1]
    n = n1 - 1
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()
    # Out-of-place: the working copy we mask; NaN becomes -inf (unrankable), +/-inf stay.
    s = torch.nan_to_num(scores, nan=-math.inf, posinf=math.inf, neginf=-math.inf)
    s[:, 0] = -math.inf
    if handling != "none" and seen_rows.numel():
        fill = torch.tensor(-math.inf if handling == "remove" else 0.0, dtype=s.dtype, device=s.device)
        s.index_put_((seen_rows, seen_cols), fill)

    t = s.gather(1, targets.unsqueeze(1))  # (B, 1)
    unrankable = t.squeeze(1) == -math.inf
    ranks = (s > t).sum(1, dtype=torch.int32)  # int32 reductions are cheaper; N < 2**31
    ties = (s >= t).sum(1, dtype=torch.int32) - ranks - 1  # other items with exactly the target's score
    tied_rows = torch.nonzero((ties > 0) & ~unrankable).flatten()
    if tied_rows.numel():
        ids = torch.arange(n1, device=s.device)
        sub = s.index_select(0, tied_rows)
        before = (sub == t[tied_rows]) & (ids.unsqueeze(0) < targets[tied_rows].unsqueeze(1))
        ranks[tied_rows] += before.sum(1, dtype=torch.int32)
    ranks = torch.where(unrankable, torch.full_like(ranks, n), ranks).long()
    if not with_topk:
        return ranks, None

    k = kmax  # <= n, checked by evaluate
    # One extra candidate shows whether the K-th score is shared with an item outside the list.
    vals, idx = _top_candidates(s, k + 1)
    # topk's order among equal scores is unspecified: re-sort candidates by (score desc, id asc).
    idx, order = torch.sort(idx, dim=1)
    vals = vals.gather(1, order)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    idx = idx.gather(1, order)
    boundary = torch.nonzero(vals[:, k - 1] == vals[:, k]).flatten()
    if boundary.numel():
        bv, bi = torch.sort(s.index_select(0, boundary), dim=1, descending=True, stable=True)
        vals[boundary] = bv[:, : k + 1]
        idx[boundary] = bi[:, : k + 1]
    vals, idx = vals[:, :k], idx[:, :k]
    idx = torch.where(vals == -math.inf, torch.zeros_like(idx), idx)
    return ranks, idx


_FILTER_MIN_COLUMNS = 1 << 19  # measured: 2x slower than torch.topk at 100k columns, 23% faster at 1M
_FILTER_MAX_CANDIDATES = 4096


def _top_candidates(s: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``m`` largest values of each row of ``s`` (B, C) and their columns, as ``torch.topk``.

    On wide rows (a catalogue of 524,288 items or more) a threshold filter replaces the
    selection over the whole row: the row is cut into ``m`` slices, and the smallest of the
    ``m`` slice maxima cannot exceed the row's m-th largest value (the maxima are ``m``
    distinct elements), so every element of the top ``m`` is at or above it. Only those
    candidates (typically a few dozen) are selected from. Rows with too many candidates
    (massive ties, rows of mostly -inf) fall back to ``torch.topk`` over their whole row. Values are
    exact; which of several equal values is returned is unspecified, as with ``torch.topk``.
    """
    b, c = s.shape
    if c < _FILTER_MIN_COLUMNS or b == 0:
        return torch.topk(s, m, dim=1)
    width = -(-c // m)
    padded = s if width * m == c else torch.nn.functional.pad(s, (0, width * m - c), value=-math.inf)
    threshold = padded.view(b, m, width).amax(dim=2).amin(dim=1, keepdim=True)  # (B, 1)
    rows, cols = torch.nonzero(s >= threshold, as_tuple=True)
    over = torch.bincount(rows, minlength=b) > _FILTER_MAX_CANDIDATES
    if over.any():
        keep = ~over[rows]
        rows, cols = rows[keep], cols[keep]
    counts = torch.bincount(rows, minlength=b)
    width = max(int(counts.max()), m)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(rows), device=s.device) - starts[rows]
    vals = torch.full((b, width), -math.inf, dtype=s.dtype, device=s.device)
    ids = torch.zeros((b, width), dtype=torch.long, device=s.device)
    vals[rows, slot] = s[rows, cols]
    ids[rows, slot] = cols
    top, where = torch.topk(vals, m, dim=1)
    idx = ids.gather(1, where)
    if over.any():
        wide = torch.nonzero(over).flatten()
        top[wide], idx[wide] = torch.topk(s.index_select(0, wide), m, dim=1)
    return top, idx


def evaluate(
    score_fn: ScoreFn,
    eval_set: EvalSet,
    item_stats: ItemStats | None,
    config: EvalConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    main_metric: str = "NDCG@10",
    with_topk: bool = True,
) -> EvalResult:
    """Rank the whole catalogue for every user of ``eval_set`` and compute the metrics.

    Args:
        score_fn: maps histories (B, L) int64 on ``device`` to scores (B, N+1) (column 0 =
            padding, ignored), e.g. ``method.score_all``. Called under ``torch.no_grad()``;
            putting a model in eval mode is the caller's job.
        eval_set: users, histories (U, L), targets (U,) and the seen-items CSR.
        item_stats: target buckets/groups/head-tail for the grouped metrics and tail
            coverage; ``None`` reports overall metrics and Coverage@K only.
        config: cut-offs, history handling, chunk size; default :class:`EvalConfig`.
        device: where histories are sent and ranking runs (scores are moved there if needed).
        progress: show a progress bar over chunks.
        main_metric: the metric the result reports first (:meth:`EvalResult.main`); the
            run's ``train.monitor``.
        with_topk: keep each user's top-K list (needed for coverage). ``False`` computes the
            ranks alone: HR, NDCG and their groups are the same, coverage is empty and
            ``topk`` is ``None`` (validation during training, about a third faster on CPU).
    Returns:
        :class:`EvalResult`.
    """
    cfg = config or EvalConfig()
    check_metric_name(main_metric, cfg.ks)
    device = torch.device(device)
    start = time.perf_counter()
    U = len(eval_set)
    kmax = max(cfg.ks)
    targets_np = np.asarray(eval_set.targets, dtype=np.int64)
    n_items = item_stats.num_items if item_stats is not None else None
    ranks_out = np.empty(U, dtype=np.int64)
    topk_out = np.zeros((U, kmax), dtype=np.int64) if with_topk else None

    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("evaluating", total=U)
    try:
        with torch.no_grad():
            # auto without item statistics: a first chunk of 64 users tells N, then the auto size
            probing = not cfg.batch_size and n_items is None
            chunk = cfg.batch_size or (64 if probing else auto_chunk_users(n_items, device))
            lo = 0
            while lo < U:
                hi = min(lo + chunk, U)
                hist = torch.from_numpy(np.ascontiguousarray(eval_set.histories[lo:hi], dtype=np.int64)).to(device)
                scores = score_fn(hist)
                if scores.dim() != 2 or scores.shape[0] != hi - lo:
                    raise ValueError(f"score_fn returned shape {tuple(scores.shape)} for {hi - lo} histories")
                if n_items is None:
                    n_items = scores.shape[1] - 1
                if scores.shape[1] != n_items + 1:
                    raise ValueError(f"score_fn returned {scores.shape[1]} columns, expected N+1 = {n_items + 1}")
                if lo == 0:
                    _check_inputs(targets_np, n_items, cfg)
                scores = scores.to(device)
                # On CPU, rank in small row blocks so the repeated passes over the scores stay
                # in cache (about 3x faster than one pass over the whole chunk per step): at
                # most 128 rows and 8 MB (a million-item catalogue: 2 rows per block).
                step = hi - lo
                if device.type == "cpu":
                    step = max(1, min(_CPU_BLOCK_ROWS, _CPU_BLOCK_BYTES // (4 * (n_items + 1))))
                for blo in range(lo, hi, step):
                    bhi = min(blo + step, hi)
                    r, top = _rank_users(
                        scores[blo - lo : bhi - lo], eval_set, targets_np, blo, bhi, cfg, device, with_topk
                    )
                    ranks_out[blo:bhi] = r.cpu().numpy()
                    if topk_out is not None:
                        topk_out[blo:bhi] = top.cpu().numpy()
                if bar is not None:
                    bar.update(task, advance=hi - lo)
                if probing and lo == 0:
                    chunk = auto_chunk_users(n_items, device)
                lo = hi
    finally:
        if bar is not None:
            bar.stop()
    if n_items is None:  # no users and no item stats
        n_items = 0
    summary = summarize(ranks_out, targets_np, cfg.ks, n_items, item_stats, topk_out)
    return EvalResult(
        overall=summary["overall"],
        by_bucket=summary["by_bucket"],
        by_group=summary["by_group"],
        head_tail=summary["head_tail"],
        coverage=summary["coverage"],
        by_popularity=summary["by_popularity"],
        num_users=U,
        num_items=n_items,
        ks=list(cfg.ks),
        history_handling=cfg.history_handling,
        main_metric=main_metric,
        users=np.asarray(eval_set.users, dtype=np.int64).copy(),
        targets=targets_np.copy(),
        ranks=ranks_out,
        topk=topk_out,
        seconds=time.perf_counter() - start,
    )


def _rank_users(
    scores: torch.Tensor,
    eval_set: EvalSet,
    targets: np.ndarray,
    lo: int,
    hi: int,
    cfg: EvalConfig,
    device: torch.device,
    with_topk: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ranks and top-K lists (None without ``with_topk``) of users ``lo:hi`` whose scores (hi-lo, N+1) are given."""
    indptr = eval_set.seen_indptr
    cols = torch.as_tensor(eval_set.seen_items[indptr[lo] : indptr[hi]], dtype=torch.int64).to(device)
    rows = torch.from_numpy(np.repeat(np.arange(hi - lo), np.diff(indptr[lo : hi + 1]))).to(device)
    tg = torch.from_numpy(targets[lo:hi]).to(device)
    return _rank_chunk(scores, tg, rows, cols, cfg.history_handling, max(cfg.ks), with_topk)


def _check_inputs(targets: np.ndarray, n_items: int, cfg: EvalConfig) -> None:
    if max(cfg.ks) > n_items:
        raise ValueError(f"largest cut-off K={max(cfg.ks)} exceeds the catalogue size N={n_items}")
    if len(targets) and (targets.min() < 1 or targets.max() > n_items):
        raise ValueError(f"target ids must lie in 1..{n_items}, got {targets.min()}..{targets.max()}")
