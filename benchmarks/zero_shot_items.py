"""Zero-shot new items: items held out of training entirely, added back through ``POST /items``.

For one dataset, with ``data.holdout_items = {fraction: 0.1, seed: 0}`` (10% of the catalogue,
every interaction with them removed from training):

1. trains (or reuses) PAD without the held-out items, SASRec without them, and PAD on the full
   data ("retrained with them"), with ``padrec train`` and the same seed;
2. serves the PAD-without run through the real HTTP app (FastAPI TestClient), adds the held-out
   items with ``POST /items`` from their titles alone (encoded once by the run's MiniLM);
   SASRec's service is asked too and answers 409 (ID-only: it cannot rank them);
3. ranks the full catalogue for the test users of the full dataset (PAD's protocol: target =
   last item, every earlier item of the user removed from the ranking) through the served
   models, and reports HR@10 / NDCG@10 on the users whose target is a held-out item, and on the
   other users, for zero-shot PAD, SASRec (0 on held-out targets: they are not in its
   catalogue) and retrained PAD; paired t-test over users, zero-shot against retrained.

Commands (BENCHMARKS.md §8):
    python benchmarks/zero_shot_items.py --data prime_pantry
    python benchmarks/zero_shot_items.py --data games --max-minutes 12

Results: benchmarks/results/zero_shot_<data>.json and a printed table.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = "data.holdout_items={fraction: 0.1, seed: 0}"


def train(out: Path, config: str, overrides: list[str], threads: int) -> None:
    """``padrec train`` (reuses a finished run, resumes an interrupted one)."""
    cmd = [sys.executable, "-m", "padrec", "train", "-c", str(ROOT / "configs" / config), "-o", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    cmd += ["--threads", str(threads), "--no-progress"]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def metrics(ranked: list[list[int]], targets: list[int], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per-user HR@k and NDCG@k from top-k lists."""
    hr, ndcg = np.zeros(len(targets)), np.zeros(len(targets))
    for u, (items, t) in enumerate(zip(ranked, targets)):
        if t in items[:k]:
            r = items.index(t)
            hr[u], ndcg[u] = 1.0, 1.0 / math.log2(r + 2)
    return hr, ndcg


def rank_users(rec, histories: list[list[str]], targets: list[str], batch: int = 256) -> tuple[np.ndarray, ...]:
    """Top-10 of the served model for each (history, target) given as raw ids; a target the
    catalogue does not hold counts as a miss."""
    cat = rec.catalog
    ranked, tgt = [], []
    for start in range(0, len(histories), batch):
        hs = [[cat.lookup(x) for x in h] for h in histories[start : start + batch]]
        hs = [[i for i in h if i is not None] for h in hs]
        for r in rec.recommend_batch(hs, k=10):
            ranked.append(r.items)
        tgt += [cat.lookup(t) if cat.lookup(t) is not None else -1 for t in targets[start : start + batch]]
    return metrics(ranked, tgt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="prime_pantry", help="prime_pantry (built in) or a shared name, e.g. games")
    ap.add_argument("--runs-dir", default="runs/bench/zero_shot")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="cap each training run (0 = none)")
    ap.add_argument(
        "--no-sasrec",
        action="store_true",
        help="skip the SASRec run (it scores 0 on held-out targets by construction: they are not in its catalogue)",
    )
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import torch
    from fastapi.testclient import TestClient
    from rich.console import Console
    from rich.table import Table
    from scipy import stats

    from padrec.data.loading import load_dataset, load_holdout_item_ids
    from padrec.data.protocols import make_split
    from padrec.experiment import load_experiment_config, peak_rss_mb
    from padrec.io import read_json, write_json
    from padrec.serving import Recommender
    from padrec.serving.app import create_app

    torch.set_num_threads(args.threads)
    console = Console()
    runs = ROOT / args.runs_dir
    data = [] if args.data == "prime_pantry" else ["data.format=auto", f"data.name={args.data}"]
    common = [f"train.seed={args.seed}", *data]
    if args.max_minutes:
        common.append(f"train.max_minutes={args.max_minutes}")
    names = {
        "pad_holdout": ("pad.yaml", [*common, HOLDOUT]),
        "sasrec_holdout": ("sasrec.yaml", [*common, HOLDOUT]),
        "pad_full": ("pad.yaml", common),
    }
    if args.no_sasrec:
        del names["sasrec_holdout"]
    dirs = {}
    for name, (config, over) in names.items():
        dirs[name] = runs / f"{name}_{args.data}"
        train(dirs[name], config, over, args.threads)

    cfg = load_experiment_config(read_json(dirs["pad_full"] / "config.json"), saved=True)
    full = load_dataset(cfg.data)
    split = make_split(full, cfg.split)
    held_cfg = load_experiment_config(read_json(dirs["pad_holdout"] / "config.json"), saved=True).data
    held = set(load_holdout_item_ids(held_cfg))
    reduced = load_dataset(held_cfg)
    ids = [str(x) for x in full.item_ids]
    histories, targets = [], []
    for u, t in zip(split.test.users, split.test.targets):
        seq = full.sequences[u]
        assert seq[-1] == t
        histories.append([ids[i] for i in seq[:-1]])
        targets.append(ids[t])
    is_new = np.array([t in held for t in targets])
    console.print(
        f"{args.data}: {full.num_items} items, {len(held)} held out ({reduced.held_out.removed_interactions} "
        f"interactions removed); {len(targets)} test users, {int(is_new.sum())} with a held-out target"
    )

    # zero-shot PAD: add the held-out items through the HTTP API, from their titles alone
    zero = Recommender.load(dirs["pad_holdout"], num_threads=args.threads)
    client = TestClient(create_app(zero))
    table = reduced.held_out.item_table
    titles = [str(x) for x in table["title"]] if "title" in table.columns else list(reduced.held_out.item_ids)
    items = [{"id": i, "title": t} for i, t in zip(reduced.held_out.item_ids, titles)]
    t0 = time.perf_counter()
    for start in range(0, len(items), 200):
        r = client.post("/items", json={"items": items[start : start + 200]})
        r.raise_for_status()
    add_s = time.perf_counter() - t0
    assert zero.num_items == full.num_items, (zero.num_items, full.num_items)
    sasrec, refused = None, None
    if "sasrec_holdout" in dirs:
        sasrec = Recommender.load(dirs["sasrec_holdout"], num_threads=args.threads)
        refused = TestClient(create_app(sasrec)).post("/items", json={"items": items[:1]})
    retrained = Recommender.load(dirs["pad_full"], num_threads=args.threads)

    rows, per_user = {}, {}
    for name, rec in (
        ("PAD zero-shot (items added by POST /items)", zero),
        ("SASRec (trained without them)", sasrec),
        ("PAD retrained with them", retrained),
    ):
        if rec is None:
            continue
        hr, ndcg = rank_users(rec, histories, targets)
        per_user[name] = ndcg
        rows[name] = {
            group: {"users": int(m.sum()), "HR@10": float(hr[m].mean()), "NDCG@10": float(ndcg[m].mean())}
            for group, m in (("held_out_targets", is_new), ("other_targets", ~is_new), ("all", np.ones_like(is_new)))
        }
    z, r_ = per_user["PAD zero-shot (items added by POST /items)"], per_user["PAD retrained with them"]
    test_new = stats.ttest_rel(z[is_new], r_[is_new])
    test_old = stats.ttest_rel(z[~is_new], r_[~is_new])
    out = {
        "data": args.data,
        "seed": args.seed,
        "num_items": full.num_items,
        "held_out_items": len(held),
        "test_users": len(targets),
        "held_out_target_users": int(is_new.sum()),
        "add_items_seconds": add_s,
        "add_items_per_second": len(items) / add_s,
        "sasrec_post_items": {"status": refused.status_code, "error": refused.json().get("error")} if refused else None,
        "rows": rows,
        "ttest_zero_shot_vs_retrained": {
            "held_out_targets": {"t": float(test_new.statistic), "p": float(test_new.pvalue)},
            "other_targets": {"t": float(test_old.statistic), "p": float(test_old.pvalue)},
        },
        "runs": {k: str(v.relative_to(ROOT)) for k, v in dirs.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "training_runs_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "max_minutes": args.max_minutes,
        "threads": args.threads,
        "loadavg": os.getloadavg(),
    }
    tab = Table(title=f"zero-shot new items on {args.data} (test, full ranking, history removed)")
    for col in ("model", "held-out targets HR@10", "NDCG@10", "other targets HR@10", "NDCG@10"):
        tab.add_column(col)
    for name, r in rows.items():
        h, o = r["held_out_targets"], r["other_targets"]
        tab.add_row(name, f"{h['HR@10']:.4f}", f"{h['NDCG@10']:.4f}", f"{o['HR@10']:.4f}", f"{o['NDCG@10']:.4f}")
    console.print(tab)
    console.print(
        f"{int(is_new.sum())} users with a held-out target; zero-shot vs retrained NDCG@10 paired t-test p = "
        f"{test_new.pvalue:.3g} (held-out targets), {test_old.pvalue:.3g} (others); {len(items)} items added in "
        f"{add_s:.1f} s"
        + (f"; SASRec's POST /items: {refused.status_code} {refused.json().get('error')}" if refused else "")
    )
    path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"zero_shot_{args.data}.json"
    write_json(path, out)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
