"""Export padrec's FAERec-protocol split of Beauty to a neutral file for the peer tools.

Runs in padrec's own environment (``python3`` with padrec installed). It loads Beauty exactly as
``configs/sasrec_faerec_beauty.yaml`` does (``data: {format: auto, name: beauty}``,
``split: {protocol: faerec, max_len: 50}``, shifted training windows as padrec's SASRec trains)
and writes ``OUT/split.npz`` (default ``/work/venvs/peer_data/beauty``, outside the repository):

- ``num_items`` N (item ids 1..N; 0 is padding), ``max_len`` L;
- ``train_indptr``/``train_items``: CSR of the training sequences *as padrec trains on them*.
  Row r is read back from padrec's training window r: its input window ``left_pad(train[:-1], L)``
  and target window ``left_pad(train[1:], L)`` together cover ``train[-(L+1):]``, where
  ``train = seq[:-2]`` for users with at least 4 items and ``train = seq`` for users with
  exactly 2 (users with 1 or 3 items give no training target). Every next-item target of padrec's
  epoch is a position of these sequences, with at most L items of history before it;
  ``train_users``: index of each row's user;
- ``{valid,test}_users``, ``_histories`` (U, L) int64 left-padded with 0, ``_targets``,
  ``_seen_indptr``/``_seen_items``: the evaluation examples and their seen-item CSR, straight from
  padrec's :class:`~padrec.data.EvalSet` (the whole prior history, not only the window);
- ``user_ids``: the release's user ids, by dataset index.

It also writes RecBole atomic files ``OUT/recbole/beauty_peer/beauty_peer.inter``
(training sequences only: ``user_id:token item_id:token timestamp:float``, timestamp = position)
and ``beauty_peer.item`` (every item 1..N, so RecBole's catalogue is the full one).

Usage: ``python3 benchmarks/peers/export_split.py [--out DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_OUT = "/work/venvs/peer_data/beauty"


def _csr(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.array([len(r) for r in rows], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    items = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    return indptr, items


def training_sequences(inputs: np.ndarray, targets: np.ndarray) -> list[np.ndarray]:
    """The item sequence each shifted training window (inputs, targets: (T, L)) trains on.

    Checks that the targets are the inputs shifted by one, as padrec's ``shifted`` examples are.
    """
    seqs: list[np.ndarray] = []
    for x, y in zip(inputs, targets):
        xs, ys = x[x != 0], y[y != 0]
        if len(xs) != len(ys) or len(xs) == 0 or not np.array_equal(xs[1:], ys[:-1]):
            raise SystemExit("unexpected training window: targets are not the inputs shifted by one")
        seqs.append(np.concatenate([xs, ys[-1:]]))
    return seqs


def write_atomic(out: Path, train_seqs: list[np.ndarray], train_users: np.ndarray, num_items: int) -> dict:
    """RecBole atomic files of the training sequences (and the full item list)."""
    folder = out / "recbole" / "beauty_peer"
    folder.mkdir(parents=True, exist_ok=True)
    inter = folder / "beauty_peer.inter"
    with open(inter, "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, seq in zip(train_users, train_seqs):
            for pos, item in enumerate(seq):
                f.write(f"{u}\t{item}\t{pos}\n")
    item_file = folder / "beauty_peer.item"
    with open(item_file, "w", encoding="utf-8") as f:
        f.write("item_id:token\n")
        f.write("".join(f"{i}\n" for i in range(1, num_items + 1)))
    return {"inter": str(inter), "item": str(item_file), "inter_sha256": _sha256(inter)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)

    from padrec.data import DataConfig, SplitConfig, load_dataset, make_split

    dataset = load_dataset(DataConfig(name="beauty", format="auto"))
    split = make_split(dataset, SplitConfig(protocol="faerec", max_len=50, train_examples="shifted"))
    L, N = split.config.max_len, split.num_items
    train_seqs = training_sequences(split.train_inputs, split.train_targets)
    tr_indptr, tr_items = _csr(train_seqs)

    # Cross-check the readback against the raw sequences: the last L+1 items of seq[:-2] (or of seq).
    lengths = np.array([len(s) for s in dataset.sequences])
    for r, u in enumerate(split.train_users):
        s = np.asarray(dataset.sequences[u])
        full = s if len(s) == 2 else s[:-2]
        if not np.array_equal(train_seqs[r], full[-(L + 1) :]):
            raise SystemExit(f"training sequence of user {u} differs from seq[:-2][-{L + 1}:]")
    full_len = np.array(
        [len(dataset.sequences[u]) - (0 if len(dataset.sequences[u]) == 2 else 2) for u in split.train_users]
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "num_items": np.int64(N),
        "max_len": np.int64(L),
        "train_indptr": tr_indptr,
        "train_items": tr_items,
        "train_users": split.train_users.astype(np.int64),
        "user_ids": np.asarray([str(u) for u in dataset.user_ids]),
    }
    for name, ev in (("valid", split.valid), ("test", split.test)):
        arrays[f"{name}_users"] = ev.users.astype(np.int64)
        arrays[f"{name}_histories"] = ev.histories.astype(np.int64)
        arrays[f"{name}_targets"] = ev.targets.astype(np.int64)
        arrays[f"{name}_seen_indptr"] = ev.seen_indptr.astype(np.int64)
        arrays[f"{name}_seen_items"] = ev.seen_items.astype(np.int64)
    tmp = out / "split.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out / "split.npz")

    summary = {
        "file": str(out / "split.npz"),
        "sha256": _sha256(out / "split.npz"),
        "dataset": dataset.name,
        "users": len(dataset.sequences),
        "interactions": int(lengths.sum()),
        "num_items": int(N),
        "max_len": int(L),
        "users_by_length": {
            "1": int((lengths == 1).sum()),
            "2": int((lengths == 2).sum()),
            "3": int((lengths == 3).sum()),
            ">=4": int((lengths >= 4).sum()),
        },
        "train_sequences": len(train_seqs),
        "train_targets_per_epoch": int(sum(len(s) - 1 for s in train_seqs)),
        "train_sequences_truncated_to_L+1": int((full_len > L + 1).sum()),
        "valid_users": len(split.valid),
        "test_users": len(split.test),
        "test_targets_repeating_history": int(
            sum(int(t in split.test.seen(i)) for i, t in enumerate(split.test.targets))
        ),
        "valid_targets_repeating_history": int(
            sum(int(t in split.valid.seen(i)) for i, t in enumerate(split.valid.targets))
        ),
    }
    summary["recbole_atomic"] = write_atomic(out, train_seqs, split.train_users, N)
    with open(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
