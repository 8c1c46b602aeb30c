"""Check that ``faerec_protocol.py`` ranks exactly as padrec's evaluator (``history_handling: zero``).

Runs in padrec's environment. Two checks, each printing the maximum absolute difference of the
per-user ranks and of HR/NDCG@{5,10,20} between the two evaluators (all must be 0):

1. synthetic: small random catalogues with heavy ties (scores rounded to a few levels, exact zeros
   that tie with the zeroed seen items), NaN / +inf / -inf scores, repeated targets among the seen
   items and empty histories;
2. exported: the first ``--users`` test and validation users of the exported Beauty split
   (``export_split.py``) with random normal scores over all 57,290 columns (half negative, so
   zeroing the seen items moves them up), the target boosted by a random amount (hits at every
   cut-off), rounded to 0.01 (ties).

Usage: ``python3 benchmarks/peers/check_protocol.py [--split PATH] [--users 1000]``; exit status 1
on any difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import faerec_protocol as fp  # noqa: E402

KS = (5, 10, 20)


def padrec_ranks(scores: np.ndarray, data: fp.EvalData, batch_size: int = 97) -> tuple[np.ndarray, dict]:
    """Ranks and overall metrics from padrec's own ``evaluate`` on precomputed ``scores`` (U, N+1)."""
    from padrec.data import EvalSet
    from padrec.evaluation import EvalConfig, evaluate

    rows = np.arange(len(data), dtype=np.int64).reshape(-1, 1)  # the score function looks rows up
    ev = EvalSet(data.users, rows, data.targets, data.seen_indptr, data.seen_items)
    table = torch.from_numpy(scores)
    cfg = EvalConfig(ks=list(KS), history_handling="zero", batch_size=batch_size)
    res = evaluate(lambda h: table[h[:, 0]], ev, None, cfg, with_topk=False)
    return np.asarray(res.ranks), {k: float(v) for k, v in res.overall.items()}


def peer_ranks(scores: np.ndarray, data: fp.EvalData, batch_size: int = 61) -> tuple[np.ndarray, dict]:
    """Ranks and metrics from ``faerec_protocol.evaluate_scores`` on the same scores."""
    rows = np.arange(len(data), dtype=np.int64).reshape(-1, 1)
    d = fp.EvalData(data.users, rows, data.targets, data.seen_indptr, data.seen_items)
    table = torch.from_numpy(scores)
    out = fp.evaluate_scores(lambda h: table[h[:, 0]], d, scores.shape[1] - 1, KS, batch_size=batch_size, block_rows=17)
    return out["ranks"], out["metrics"]


def compare(scores: np.ndarray, data: fp.EvalData) -> dict[str, float]:
    """Max absolute differences (ranks, each metric) between padrec's and the peer evaluator."""
    r1, m1 = padrec_ranks(scores, data)
    r2, m2 = peer_ranks(scores, data)
    out = {"ranks": float(np.abs(r1 - r2).max()) if len(r1) else 0.0}
    for k in KS:
        for name in (f"HR@{k}", f"NDCG@{k}"):
            out[name] = abs(m1[name] - m2[name])
    out["NDCG@10_value"] = m2["NDCG@10"]
    return out


def synthetic_case(seed: int, users: int = 300, items: int = 40) -> tuple[np.ndarray, fp.EvalData]:
    """Random scores with ties, special values, repeats and seen items over a small catalogue."""
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=(users, items + 1)) * 2) / 2  # few levels: many ties, exact zeros
    scores = scores.astype(np.float32)
    special = rng.random(scores.shape)
    scores[special < 0.02] = np.nan
    scores[(special >= 0.02) & (special < 0.03)] = np.inf
    scores[(special >= 0.03) & (special < 0.05)] = -np.inf
    targets = rng.integers(1, items + 1, size=users)
    seen = []
    for u in range(users):
        n = int(rng.integers(0, 12))  # 0 = an empty history
        h = rng.integers(1, items + 1, size=n)
        if n and rng.random() < 0.2:
            h[rng.integers(0, n)] = targets[u]  # a repeated target: zeroed, still rankable
        seen.append(h.astype(np.int64))
    indptr = np.concatenate([[0], np.cumsum([len(h) for h in seen])]).astype(np.int64)
    items_csr = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    data = fp.EvalData(np.arange(users), np.zeros((users, 1), np.int64), targets.astype(np.int64), indptr, items_csr)
    return scores, data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default=fp.DEFAULT_SPLIT)
    ap.add_argument("--users", type=int, default=1000, help="exported users checked per set (random scores)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    worst = 0.0
    for seed in range(5):
        scores, data = synthetic_case(seed)
        diff = compare(scores, data)
        worst = max(worst, *(v for k, v in diff.items() if k != "NDCG@10_value"))
        print(f"synthetic seed {seed}: " + ", ".join(f"{k} {v:.3g}" for k, v in diff.items()))
    if Path(args.split).is_file():
        split = fp.load_split(args.split)
        rng = np.random.default_rng(0)
        for name in ("valid", "test"):
            data = split[name].head(args.users)
            # Half the scores negative (so the zeroed seen items move up), rounded (ties), and the
            # target boosted by a random amount so that ranks spread from 0 to thousands.
            scores = rng.standard_normal((len(data), split["num_items"] + 1), dtype=np.float32)
            scores[np.arange(len(data)), data.targets] += rng.uniform(0, 4.5, len(data)).astype(np.float32)
            scores = np.round(scores * 100) / 100
            diff = compare(scores.astype(np.float32), data)
            worst = max(worst, *(v for k, v in diff.items() if k != "NDCG@10_value"))
            print(
                f"exported {name} ({len(data)} users × {split['num_items'] + 1} columns): "
                + ", ".join(f"{k} {v:.3g}" for k, v in diff.items())
            )
    else:
        print(f"{args.split} not found: run export_split.py first (exported check skipped)")
    print(f"max difference: {worst:g}")
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
