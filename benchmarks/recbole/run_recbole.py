"""Train and evaluate one RecBole 1.2.1 model on Prime Pantry; write JSON figures.

Run inside the separate RecBole virtualenv (never padrec's), e.g.

    OMP_WAIT_POLICY=PASSIVE /work/venvs/recbole/bin/python \
        benchmarks/recbole/run_recbole.py --model sasrec

It uses RecBole's own ``Trainer.fit`` / ``Trainer.evaluate``; a thin subclass
only times each training epoch and each full validation, and stops training
before an epoch that would overrun ``--max-minutes`` (the best-validation
checkpoint saved so far is then tested, as after early stopping).

Recorded: seconds per training epoch (mean and per epoch), seconds per full
evaluation, peak RSS (ru_maxrss), best validation epoch and metrics, test
HR@10 / NDCG@10 of the best-validation model, epochs run, why training ended,
total wall time, and a check that RecBole's dataset and valid/test targets
equal padrec's PAD protocol (valid target seq[-2], test target seq[-1]).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

T_START = time.time()

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODELS = {"sasrec": "sasrec.yaml", "gru4rec": "gru4rec.yaml"}


class WallCapReached(Exception):
    pass


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument(
        "--data-path",
        default="/work/venvs/recbole_data",
        help="folder holding prime_pantry/prime_pantry.inter (make_atomic.py --out)",
    )
    ap.add_argument(
        "--work-dir",
        default="/work/venvs/recbole_work",
        help="cwd for RecBole's log/, saved/ and log_tensorboard/ (outside the repo)",
    )
    ap.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/recbole_<model>_prime_pantry.json)"
    )
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument(
        "--max-minutes", type=float, default=40.0, help="wall-time cap for training (fit); checked before each epoch"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2020)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("WARNING: OMP_WAIT_POLICY is not PASSIVE", file=sys.stderr)
    out_json = (
        os.path.abspath(args.out)
        if args.out
        else os.path.join(REPO, "benchmarks", "results", f"recbole_{args.model}_prime_pantry.json")
    )
    config_files = [os.path.join(HERE, "base.yaml"), os.path.join(HERE, MODELS[args.model])]
    os.makedirs(args.work_dir, exist_ok=True)
    os.chdir(args.work_dir)

    from logging import getLogger

    import numpy as np
    import recbole
    import recbole.model.sequential_recommender  # noqa: F401  (sine.py turns anomaly detection on)
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    # sine.py calls torch.autograd.set_detect_anomaly(True) at import: ~4x slower.
    torch.autograd.set_detect_anomaly(False)
    torch.set_num_threads(args.threads)

    overrides = {
        "data_path": args.data_path,
        "epochs": args.epochs,
        "seed": args.seed,
        "checkpoint_dir": os.path.join(args.work_dir, "saved"),
    }
    config = Config(model=None, dataset="prime_pantry", config_file_list=config_files, config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    torch.set_num_threads(args.threads)
    logger.info(config)

    # ---- data -----------------------------------------------------------
    t0 = time.time()
    dataset = create_dataset(config)
    logger.info(dataset)
    counts = {  # before data_preparation (which rebuilds inter_feat)
        "users": int(dataset.user_num - 1),  # minus padding id 0
        "items": int(dataset.item_num - 1),
        "interactions": int(dataset.inter_num),
    }
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t_data = time.time() - t0

    counts.update(
        {
            "train_examples_per_epoch": int(len(train_data._dataset)),
            "valid_users": int(len(valid_data._dataset)),
            "test_users": int(len(test_data._dataset)),
        }
    )
    expected = {"users": 12871, "items": 8347, "interactions": 115004}
    counts_match = all(counts[k] == v for k, v in expected.items())

    # Targets check: RecBole's valid/test target tokens vs. seq[-2] / seq[-1]
    # read straight from the atomic file (tokens are PAD item ids).
    seqs: dict[str, list[str]] = {}
    with open(os.path.join(args.data_path, "prime_pantry", "prime_pantry.inter")) as f:
        next(f)
        for line in f:
            u, i, _ = line.rstrip("\n").split("\t")
            seqs.setdefault(u, []).append(i)
    uf, itf = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    list_f = itf + config["LIST_SUFFIX"]
    len_f = config["ITEM_LIST_LENGTH_FIELD"]

    def check(loader, offset):
        d = loader._dataset.inter_feat
        users = dataset.id2token(uf, d[uf].numpy())
        items = dataset.id2token(itf, d[itf].numpy())
        lists, lens = d[list_f].numpy(), d[len_f].numpy()
        bad_target = bad_hist = 0
        for k, (u, it) in enumerate(zip(users, items)):
            s = seqs[u]
            if s[-offset] != it:
                bad_target += 1
            hist = list(dataset.id2token(itf, lists[k][: lens[k]]))
            if hist != s[: len(s) - offset][-config["MAX_ITEM_LIST_LENGTH"] :]:
                bad_hist += 1
        return {"rows": len(users), "target_mismatches": bad_target, "history_mismatches": bad_hist}

    protocol_check = {"valid_vs_seq[-2]": check(valid_data, 2), "test_vs_seq[-1]": check(test_data, 1)}
    repeat_test = sum(1 for s in seqs.values() if s[-1] in s[:-1])
    logger.info(f"counts={counts} match={counts_match} protocol_check={protocol_check}")

    # ---- model / trainer --------------------------------------------------
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    n_params = int(sum(p.numel() for p in model.parameters()))
    BaseTrainer = get_trainer(config["MODEL_TYPE"], config["model"])

    epoch_train_s: list[float] = []
    epoch_train_cpu_s: list[float] = []  # process CPU time (all threads), less load-sensitive
    epoch_valid_cpu_s: list[float] = []
    epoch_load1: list[float] = []  # 1-min load average at the end of each epoch
    epoch_valid_s: list[float] = []
    epoch_loss: list[float] = []
    epoch_valid: list[dict] = []
    cap_s = args.max_minutes * 60.0
    state = {"fit_start": None, "capped": False}

    class TimedTrainer(BaseTrainer):
        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            elapsed = time.time() - state["fit_start"]
            if epoch_train_s:
                per_epoch = (sum(epoch_train_s) + sum(epoch_valid_s)) / len(epoch_train_s)
                if elapsed + per_epoch > cap_s:
                    state["capped"] = True
                    raise WallCapReached(
                        f"stopping before epoch {epoch_idx}: {elapsed:.0f}s elapsed + "
                        f"{per_epoch:.0f}s/epoch > cap {cap_s:.0f}s"
                    )
            t, c = time.perf_counter(), time.process_time()
            loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
            epoch_train_s.append(time.perf_counter() - t)
            epoch_train_cpu_s.append(time.process_time() - c)
            epoch_load1.append(os.getloadavg()[0])
            epoch_loss.append(float(sum(loss) if isinstance(loss, tuple) else loss))
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            t, c = time.perf_counter(), time.process_time()
            score, result = super()._valid_epoch(valid_data, show_progress)
            epoch_valid_s.append(time.perf_counter() - t)
            epoch_valid_cpu_s.append(time.process_time() - c)
            epoch_valid.append({k: float(v) for k, v in result.items()})
            return score, result

    trainer = TimedTrainer(config, model)
    torch.autograd.set_detect_anomaly(False)
    torch.set_num_threads(args.threads)
    anomaly = bool(torch.is_anomaly_enabled())

    state["fit_start"] = time.time()
    stop_reason = None
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
    except WallCapReached as e:
        stop_reason = f"wall-time cap ({args.max_minutes:g} min): {e}"
        logger.info(stop_reason)
    fit_s = time.time() - state["fit_start"]
    epochs_run = len(epoch_train_s)
    scores = [r["ndcg@10"] for r in epoch_valid]
    # RecBole's own early stopping rounds to 4 decimals with '>='; the checkpoint
    # it keeps is the last epoch whose rounded score reached the running best.
    best = -1.0
    best_epoch = None
    for e, s in enumerate(scores):
        if round(s, 4) >= best:  # mirrors recbole.utils.early_stopping (bigger=True)
            best, best_epoch = round(s, 4), e
    if stop_reason is None:
        if epochs_run >= args.epochs:
            stop_reason = f"epoch limit ({args.epochs})"
        else:
            stop_reason = f"early stopping (stopping_step {config['stopping_step']})"

    # ---- test with the best-validation checkpoint --------------------------
    t = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_eval_s = time.perf_counter() - t
    test_result = {k: float(v) for k, v in test_result.items()}
    # Also re-evaluate validation with the loaded checkpoint (sanity).
    valid_best = {k: float(v) for k, v in trainer.evaluate(valid_data, load_best_model=False).items()}
    logger.info(f"best valid epoch {best_epoch}: {valid_best}; test: {test_result}")

    peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    result = {
        "tool": "RecBole",
        "model": config["model"],
        "dataset": "prime_pantry (PAD release), atomic file from benchmarks/recbole/make_atomic.py",
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "autograd_anomaly_detection": anomaly,
            "platform": platform.platform(),
        },
        "config": {
            k: (config[k] if isinstance(config[k], (int, float, str, bool, list, dict, type(None))) else str(config[k]))
            for k in [
                "loss_type",
                "learner",
                "learning_rate",
                "weight_decay",
                "train_batch_size",
                "eval_batch_size",
                "epochs",
                "stopping_step",
                "MAX_ITEM_LIST_LENGTH",
                "eval_args",
                "metrics",
                "topk",
                "valid_metric",
                "seed",
                "user_inter_num_interval",
                "item_inter_num_interval",
                "n_layers",
                "n_heads",
                "hidden_size",
                "inner_size",
                "hidden_dropout_prob",
                "attn_dropout_prob",
                "hidden_act",
                "embedding_size",
                "num_layers",
                "dropout_prob",
            ]
            if k in config
        },
        "config_files": [os.path.relpath(p, REPO) for p in config_files],
        "max_minutes": args.max_minutes,
        "n_parameters": n_params,
        "counts": counts,
        "counts_match_expected": counts_match,
        "protocol_check": protocol_check,
        "history_items_removed_in_ranking": False,
        "history_handling_note": (
            "RecBole's sequential full ranking masks only the padding item; items already in the "
            f"user's history stay rankable ({repeat_test} of {counts['test_users']} test targets "
            "repeat an earlier item and can be hit). padrec's PAD protocol removes history items, "
            "so compare with padrec run under the same history handling."
        ),
        "seconds_per_train_epoch_mean": mean(epoch_train_s),
        "seconds_per_full_eval_mean": mean(epoch_valid_s),
        "seconds_per_train_epoch_median": float(np.median(epoch_train_s)) if epoch_train_s else None,
        "seconds_per_train_epoch_min": min(epoch_train_s) if epoch_train_s else None,
        "seconds_per_full_eval_median": float(np.median(epoch_valid_s)) if epoch_valid_s else None,
        "cpu_seconds_per_train_epoch_mean": mean(epoch_train_cpu_s),
        "cpu_seconds_per_full_eval_mean": mean(epoch_valid_cpu_s),
        "load_average_1min_mean": mean(epoch_load1),
        "load_average_1min_max": max(epoch_load1) if epoch_load1 else None,
        "timing_note": (
            "wall seconds are only comparable when the machine is otherwise idle (load average "
            "about the thread count); cpu_seconds = process CPU time over all threads."
        ),
        "seconds_test_eval": test_eval_s,
        "seconds_data_preparation": t_data,
        "seconds_fit": fit_s,
        "seconds_total_wall": time.time() - T_START,
        "peak_rss_mb": peak_rss_kb / 1024.0,
        "epochs_run": epochs_run,
        "stop_reason": stop_reason,
        "capped": state["capped"],
        "best_valid_epoch": best_epoch,  # 0-based, as in RecBole's log
        "best_valid": {"hit@10": epoch_valid[best_epoch]["hit@10"], "ndcg@10": epoch_valid[best_epoch]["ndcg@10"]}
        if best_epoch is not None
        else None,
        "best_valid_reevaluated": valid_best,
        "test": test_result,
        "per_epoch": [
            {
                "epoch": e,
                "train_s": epoch_train_s[e],
                "train_cpu_s": epoch_train_cpu_s[e],
                "load1": epoch_load1[e],
                "train_loss": epoch_loss[e],
                "valid_s": epoch_valid_s[e] if e < len(epoch_valid_s) else None,
                "valid_cpu_s": epoch_valid_cpu_s[e] if e < len(epoch_valid_cpu_s) else None,
                **({"valid_" + k: v for k, v in epoch_valid[e].items()} if e < len(epoch_valid) else {}),
            }
            for e in range(epochs_run)
        ],
        "checkpoint": trainer.saved_model_file,
    }
    os.makedirs(os.path.dirname(out_json), exist_ok=True)
    with open(out_json, "w") as f:
        json.dump(result, f, indent=2)
    print(
        json.dumps(
            {
                k: result[k]
                for k in [
                    "model",
                    "seconds_per_train_epoch_mean",
                    "seconds_per_full_eval_mean",
                    "peak_rss_mb",
                    "epochs_run",
                    "stop_reason",
                    "best_valid_epoch",
                    "best_valid",
                    "test",
                ]
            },
            indent=2,
        )
    )
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
