"""RecBole 1.2.1's SASRec on FAERec's Beauty, epoch by epoch, under padrec's split and FAERec's evaluation.

Run with the RecBole virtualenv (never padrec's), after ``export_split.py``::

    OMP_WAIT_POLICY=PASSIVE /work/venvs/recbole/bin/python benchmarks/peers/run_recbole_beauty.py

Data: RecBole reads the atomic files ``export_split.py`` wrote (the exported training sequences
only, plus the full item list) and builds its own training examples from them: every prefix,
history window 50, target = the next item (RecBole's data augmentation), 235,105 examples an
epoch, the same next-item targets as padrec's SASRec epoch. Training: RecBole's SASRec model and
its own ``Trainer._train_epoch`` (the step ``Trainer.fit`` runs), CE over all items
(``train_neg_sample_args: ~``), Adam lr 1e-3, batch 256. After every epoch the model's
``full_sort_predict`` scores the exported validation and test histories, ranked by
``faerec_protocol.py`` (not RecBole's evaluator); that time is recorded apart from training.
Options and the stopping rules: ``runner_common.py``.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP pool

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import faerec_protocol as fp  # noqa: E402
import runner_common as rc  # noqa: E402

DATASET = "beauty_peer"
WORK_DIR = "/work/venvs/recbole_work/peer_beauty"  # RecBole's log/, saved/, log_tensorboard/


def recbole_config(args, data_path: str) -> dict:
    """RecBole settings as close as it allows to FAERec's SASRec (hidden 128, 2x2, FFN 512, GELU)."""
    return {
        "data_path": data_path,
        "checkpoint_dir": os.path.join(WORK_DIR, "saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "val_interval": None,
        "rm_dup_inter": None,
        "filter_inter_by_user_or_item": False,
        "MAX_ITEM_LIST_LENGTH": 50,
        # Every row of the atomic file is a training row: RecBole's split is not used (evaluation
        # runs on the exported histories), so it is all-train.
        "eval_args": {"split": {"RS": [1.0, 0.0, 0.0]}, "order": "TO", "group_by": None, "mode": "full"},
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "learner": "adam",
        "learning_rate": 0.001,
        "weight_decay": 0.0,
        "train_batch_size": 256,
        "epochs": args.epochs,
        "shuffle": True,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_size": 128,
        "inner_size": 512,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "worker": 0,
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "state": "WARNING",
    }


def left_align(histories, lengths):
    """Left-padded (B, L) histories -> RecBole's layout: items first, zeros after."""
    import torch

    L = histories.shape[1]
    shift = (L - lengths).unsqueeze(1)
    idx = (torch.arange(L).unsqueeze(0) + shift) % L
    aligned = histories.gather(1, idx)
    return torch.where(torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1), aligned, torch.zeros_like(aligned))


def main(argv: list[str] | None = None) -> int:
    args = rc.parse_args("recbole", argv, description=__doc__.splitlines()[0])
    args.out, args.split = os.path.abspath(args.out), os.path.abspath(args.split)
    data_path = os.path.join(os.path.dirname(args.split), "recbole")
    if not os.path.isfile(os.path.join(data_path, DATASET, f"{DATASET}.inter")):
        raise SystemExit(f"{data_path}/{DATASET}: atomic files missing; run python3 benchmarks/peers/export_split.py")
    os.makedirs(WORK_DIR, exist_ok=True)
    os.chdir(WORK_DIR)

    import recbole
    import recbole.model.sequential_recommender  # noqa: F401  (sine.py turns anomaly detection on)
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset
    from recbole.data.dataloader import TrainDataLoader
    from recbole.data.interaction import Interaction
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    torch.autograd.set_detect_anomaly(False)  # RecBole's sine.py switches it on at import (~4x slower)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    split = fp.load_split(args.split)
    N = split["num_items"]
    valid, test = split["valid"].head(args.eval_users), split["test"].head(args.eval_users)
    config = Config(model="SASRec", dataset=DATASET, config_dict=recbole_config(args, data_path))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(args.threads)
    dataset = create_dataset(config)
    train_dataset = dataset.build()[0]
    examples = len(train_dataset)
    expected = sum(len(s) - 1 for s in split["train"])
    if examples != expected or dataset.item_num != N + 1:
        raise SystemExit(f"RecBole built {examples} examples / {dataset.item_num} ids; expected {expected} / {N + 1}")
    if args.max_steps_per_epoch:  # smoke tests: a random subset of the examples
        keep = np.random.default_rng(args.seed).permutation(examples)[: args.max_steps_per_epoch * 256]
        train_dataset = train_dataset.copy(train_dataset.inter_feat[np.sort(keep)])
    train_data = TrainDataLoader(config, train_dataset, None, shuffle=config["shuffle"])
    # padrec's item id j -> RecBole's internal id (RecBole renumbers tokens in order of appearance)
    to_rb = np.zeros(N + 1, dtype=np.int64)
    to_rb[1:] = dataset.token2id(dataset.iid_field, [str(i) for i in range(1, N + 1)])
    to_rb_t = torch.from_numpy(to_rb)
    t_data = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    torch.autograd.set_detect_anomaly(False)
    torch.set_num_threads(args.threads)
    seq_f, len_f = model.ITEM_SEQ, model.ITEM_SEQ_LEN

    def score(hist: torch.Tensor) -> torch.Tensor:
        lengths = (hist != 0).sum(1)
        inter = Interaction({seq_f: left_align(to_rb_t[hist], lengths), len_f: lengths})
        return model.full_sort_predict(inter)[:, to_rb_t]  # columns back to padrec's ids 0..N

    settings = {
        k: config[k]
        for k in (
            "MAX_ITEM_LIST_LENGTH",
            "loss_type",
            "train_neg_sample_args",
            "learner",
            "learning_rate",
            "weight_decay",
            "train_batch_size",
            "n_layers",
            "n_heads",
            "hidden_size",
            "inner_size",
            "hidden_dropout_prob",
            "attn_dropout_prob",
            "hidden_act",
            "layer_norm_eps",
            "initializer_range",
            "seed",
            "reproducibility",
        )
    }
    settings["n_parameters"] = int(sum(p.numel() for p in model.parameters()))
    log = rc.RunLog(
        args,
        "RecBole",
        {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": np.__version__},
        settings,
    )
    log.note(
        counts={
            "train_sequences": len(split["train"]),
            "train_examples_full_epoch": expected,
            "train_examples_this_run": len(train_dataset),
            "steps_per_epoch": len(train_data),
            "valid_users": len(valid),
            "test_users": len(test),
            "num_items": N,
        },
        seconds_data_preparation=round(t_data, 3),
        autograd_anomaly_detection=bool(torch.is_anomaly_enabled()),
        setup_notes=(
            "RecBole trains each prefix of the exported training sequences as its own example (loss on the "
            "last position; the softmax includes RecBole's padding id 0), positions counted from the first "
            "item; padrec trains each user's window once with a loss at every position."
        ),
    )
    print(
        f"RecBole {recbole.__version__}: {len(train_dataset):,} examples, {len(train_data)} steps/epoch, "
        f"{len(valid):,} valid / {len(test):,} test users, {N:,} items, data {t_data:.1f}s",
        flush=True,
    )

    epoch = 0
    try:
        while True:
            epoch += 1
            t = time.perf_counter()
            loss = trainer._train_epoch(train_data, epoch - 1, show_progress=False)
            train_s = time.perf_counter() - t
            steps = len(train_data)
            t = time.perf_counter()
            model.eval()
            v = fp.evaluate_scores(score, valid, N, batch_size=args.eval_batch)
            te = fp.evaluate_scores(score, test, N, batch_size=args.eval_batch)
            eval_s = time.perf_counter() - t
            if log.end_epoch(epoch, train_s, float(loss) / steps, steps, v, te, eval_s):
                break
    except KeyboardInterrupt:
        log.finish("interrupted")
        return 130
    log.finish()
    print(f"stop: {log.stop_reason}; wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
