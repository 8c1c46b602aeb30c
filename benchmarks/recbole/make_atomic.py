"""Convert the PAD release's Prime Pantry files into a RecBole atomic .inter file.

Reads  <data>/Prime_Pantry_cleaned_history.csv  (header ``,user,history``; history
is a Python-literal list of ASINs in time order) and
       <data>/metadata_Prime_Pantry.csv         (header ``asin,title``; PAD item
id = row index + 1, 0 = padding)
and writes <out>/prime_pantry/prime_pantry.inter with the header
``user_id:token  item_id:token  timestamp:float`` (tab separated).

* item_id is PAD's internal id (metadata row index + 1) so results map back;
* user_id is the CSV row index (0-based, as in the release's first column);
* timestamp is the 0-based position in the user's sequence, so RecBole's
  time ordering (order: TO) reproduces the sequence order exactly and the
  leave-one-out split (LS: valid_and_test) gives valid target seq[-2] and
  test target seq[-1], as in PAD's protocol.

Standard library only (runs with any Python 3). ``ast.literal_eval`` parses
histories; nothing is ``eval``-ed.

Usage: python make_atomic.py [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import os
import sys

DEFAULT_DATA = "/work/shared/data/prime_pantry"
DEFAULT_OUT = "/work/venvs/recbole_data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="PAD prime_pantry folder")
    ap.add_argument("--out", default=DEFAULT_OUT, help="RecBole data_path; the file goes to OUT/prime_pantry/")
    args = ap.parse_args(argv)

    meta_path = os.path.join(args.data, "metadata_Prime_Pantry.csv")
    hist_path = os.path.join(args.data, "Prime_Pantry_cleaned_history.csv")

    asin2id: dict[str, int] = {}
    with open(meta_path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[:1] != ["asin"]:
            raise SystemExit(f"unexpected metadata header {header}")
        for row_index, row in enumerate(reader):
            asin = row[0]
            if asin in asin2id:
                raise SystemExit(f"duplicate ASIN {asin} in metadata")
            asin2id[asin] = row_index + 1

    out_dir = os.path.join(args.out, "prime_pantry")
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, "prime_pantry.inter")

    n_users = n_inter = n_repeat_test = 0
    items_seen: set[int] = set()
    lengths = []
    with open(hist_path, newline="", encoding="utf-8") as f, open(out_path, "w", encoding="utf-8", newline="") as g:
        reader = csv.reader(f)
        header = next(reader)
        if header[1:] != ["user", "history"]:
            raise SystemExit(f"unexpected history header {header}")
        g.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for row in reader:
            uid = row[0]
            history = ast.literal_eval(row[2])
            if not isinstance(history, list) or not all(isinstance(a, str) for a in history):
                raise SystemExit(f"bad history for user row {uid}")
            ids = [asin2id[a] for a in history]
            for pos, iid in enumerate(ids):
                g.write(f"{uid}\t{iid}\t{pos}\n")
            n_users += 1
            n_inter += len(ids)
            items_seen.update(ids)
            lengths.append(len(ids))
            if ids[-1] in ids[:-1]:
                n_repeat_test += 1

    with open(out_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    summary = {
        "file": out_path,
        "sha256": digest,
        "users": n_users,
        "items_in_metadata": len(asin2id),
        "items_interacted": len(items_seen),
        "interactions": n_inter,
        "min_len": min(lengths),
        "max_len": max(lengths),
        "mean_len": round(n_inter / n_users, 4),
        "test_targets_repeating_history": n_repeat_test,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
