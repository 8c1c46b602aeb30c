"""Map free text to catalogue items with BM25, and merge several ranked lists into one.

CALRec generates item text with a language model and finds the catalogue items it names by
BM25 over the item texts; with N sampled generations per history it merges the N ranked lists
"quasi-round-robin" into one ranking. These are the two steps, independent of any model:

- :class:`BM25Catalogue`: a BM25 index over the item texts (``bm25s``, an optional
  dependency: ``pip install bm25s``); :meth:`~BM25Catalogue.search` gives each query's best
  items with a positive score (a query sharing no term with an item never retrieves it).
- :func:`round_robin_merge`: rank r of every list in turn (lists in the given order, e.g. by
  the generation's likelihood), skipping items already placed; CALRec's abstract names the
  merge "quasi-round-robin" without defining it, so this plain interleaving is padrec's reading.
- :func:`ranking_scores`: a ranking as an (N+1,) score vector for the full-ranking evaluator:
  ranked items get ``len(ranking) - position``, the others 0 (so ties among the unranked
  items fall as the evaluator's tie rule says), column 0 (padding) ``-inf``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

__all__ = ["BM25Catalogue", "ranking_scores", "round_robin_merge"]


def _bm25s():
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - exercised only without the package
        raise ImportError("BM25 retrieval needs the bm25s package: pip install bm25s") from exc
    return bm25s


class BM25Catalogue:
    """BM25 over item texts; item ids are 1..N in the order of ``texts`` (row i = item i+1).

    Args:
        texts: one text per item (e.g. the rendered item template), N entries.
        stopwords: ``bm25s`` stop-word list name (``"en"``) or None.
        k1, b: BM25's term-saturation and length-normalisation parameters (bm25s defaults).
    """

    def __init__(self, texts: Sequence[str], stopwords: str | None = "en", k1: float = 1.5, b: float = 0.75) -> None:
        if not texts:
            raise ValueError("BM25Catalogue needs at least one item text")
        bm25s = _bm25s()
        self.num_items = len(texts)
        self.stopwords = stopwords
        self._retriever = bm25s.BM25(k1=k1, b=b)
        tokens = bm25s.tokenize(list(texts), stopwords=stopwords, show_progress=False)
        self._vocab = tokens.vocab
        quiet = logging.getLogger("bm25s")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # bm25s logs each index build at DEBUG
        try:
            self._retriever.index(tokens, show_progress=False)
        finally:
            quiet.setLevel(level)

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[tuple[int, float]]]:
        """The best ``k`` items of each query: per query a list of ``(item id, score)``, best
        first, positive scores only (it may be shorter than ``k`` or empty)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        bm25s = _bm25s()
        k = min(k, self.num_items)
        out: list[list[tuple[int, float]]] = []
        for query in queries:
            tokens = bm25s.tokenize([query], stopwords=self.stopwords, show_progress=False, return_ids=False)[0]
            known = [t for t in tokens if t in self._vocab]
            if not known:
                out.append([])
                continue
            ids = [[self._vocab[t] for t in known]]
            docs, scores = self._retriever.retrieve(ids, k=k, show_progress=False)
            out.append([(int(d) + 1, float(s)) for d, s in zip(docs[0], scores[0]) if s > 0])
        return out


def round_robin_merge(lists: Sequence[Sequence[int]], limit: int | None = None) -> list[int]:
    """Interleave ranked lists: the first item of each list in turn, then the second, ...,
    skipping items already taken; stops after ``limit`` items (None = all)."""
    merged: list[int] = []
    seen: set[int] = set()
    depth = max((len(x) for x in lists), default=0)
    for r in range(depth):
        for ranked in lists:
            if r < len(ranked) and ranked[r] not in seen:
                seen.add(ranked[r])
                merged.append(ranked[r])
                if limit is not None and len(merged) >= limit:
                    return merged
    return merged


def ranking_scores(ranking: Sequence[int], num_items: int) -> np.ndarray:
    """(N+1,) float32 scores of a ranking of item ids 1..N (see the module docstring)."""
    scores = np.zeros(num_items + 1, dtype=np.float32)
    scores[0] = -np.inf
    ranking = np.asarray(ranking, dtype=np.int64)
    if len(ranking):
        if ranking.min() < 1 or ranking.max() > num_items:
            raise ValueError(f"ranking holds ids outside 1..{num_items}")
        if len(np.unique(ranking)) != len(ranking):
            raise ValueError("ranking repeats an item")
        scores[ranking] = np.arange(len(ranking), 0, -1, dtype=np.float32)
    return scores
