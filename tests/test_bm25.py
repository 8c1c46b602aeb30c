"""BM25 over item texts and the round-robin merge (CALRec's retrieval step)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from padrec.text.bm25 import ranking_scores, round_robin_merge

bm25s = pytest.importorskip("bm25s", reason="bm25s is optional (pip install bm25s)")

TEXTS = ["red apple juice", "green apple", "banana bread", "apple pie recipe"]


def naive_bm25(query: str, texts: list[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Lucene's BM25 (bm25s's default): idf = ln(1 + (N - df + 0.5) / (df + 0.5)), and no (k1 + 1)
    factor in the numerator (Lucene drops it; the ranking is the same)."""
    docs = [t.split() for t in texts]
    avg = sum(len(d) for d in docs) / len(docs)
    out = np.zeros(len(docs))
    for term in set(query.split()):
        df = sum(term in d for d in docs)
        if df == 0:
            continue
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf = d.count(term)
            out[i] += idf * tf / (tf + k1 * (1 - b + b * len(d) / avg))
    return out


def test_search_matches_the_bm25_formula_and_skips_non_matching_items():
    from padrec.text.bm25 import BM25Catalogue

    cat = BM25Catalogue(TEXTS, stopwords=None)
    for query in ("apple juice", "bread", "apple pie"):
        expected = naive_bm25(query, TEXTS)
        got = cat.search([query], k=4)[0]
        assert {i for i, _ in got} == {int(i) + 1 for i in np.flatnonzero(expected > 0)}
        assert got[0][0] == int(np.argmax(expected)) + 1
        assert [sc for _, sc in got] == sorted((sc for _, sc in got), reverse=True)
    assert cat.search(["zzz unknown"], k=3) == [[]]
    assert len(cat.search(["apple"], k=2)[0]) == 2
    with pytest.raises(ValueError, match="k must be"):
        cat.search(["apple"], k=0)
    with pytest.raises(ValueError, match="at least one"):
        BM25Catalogue([])


def test_round_robin_merge_interleaves_and_deduplicates():
    assert round_robin_merge([[1, 2, 3], [2, 4], [5]]) == [1, 2, 5, 4, 3]
    assert round_robin_merge([[1, 2, 3], [2, 4], [5]], limit=3) == [1, 2, 5]
    assert round_robin_merge([]) == [] and round_robin_merge([[], [7]]) == [7]


def test_ranking_scores_order_the_full_catalogue():
    s = ranking_scores([3, 1], 4)
    assert s[0] == -np.inf and s[3] > s[1] > s[2] == s[4] == 0
    with pytest.raises(ValueError, match="outside"):
        ranking_scores([5], 4)
    with pytest.raises(ValueError, match="repeats"):
        ranking_scores([1, 1], 4)
