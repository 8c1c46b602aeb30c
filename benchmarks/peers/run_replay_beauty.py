"""RePlay 0.22's SasRec on FAERec's Beauty, epoch by epoch, under padrec's split and FAERec's evaluation.

Run with the RePlay virtualenv (never padrec's), after ``export_split.py``::

    OMP_WAIT_POLICY=PASSIVE /work/venvs/replay/bin/python benchmarks/peers/run_replay_beauty.py

RePlay 0.22's current API (the ``replay.models.nn.sequential.sasrec`` classes are deprecated in
its favour): ``replay.nn.sequential.SasRec`` built from its documented blocks, trained by
``replay.nn.lightning.LightningModule`` with a Lightning ``Trainer``, data streamed by
``replay.data.nn.ParquetModule`` with ``make_default_sasrec_transforms`` (next-token labels, loss
at every position). Data: one Parquet row per exported training sequence (its last 51 items, as
padrec trains on them), item ids shifted to RePlay's 0..N-1 with padding N. Loss (``--loss``):
``sampled`` (default) = RePlay's ``CESampled`` with its ``UniformNegativeSamplingTransform``
(``--negatives`` uniform items, one pool shared by the batch, accidental hits masked); ``ce`` =
RePlay's full ``CE`` over all N items, which computes logits at all 50 positions of every row
(padding included): 256 x 50 x 57,289 floats a step, 9.7 GB peak RSS and 23 s a step on one
thread (about 73 min an epoch), too slow for a 30-minute cap. Optimizer: RePlay's
``OptimizerFactory`` default (Adam, lr 1e-3, betas (0.9, 0.98)), batch 256. One ``Trainer.fit`` runs every epoch (one optimizer, its state kept); a
callback at each epoch's end scores the exported validation and test histories
(``forward_inference``: the last position's logits over all items), ranks them with
``faerec_protocol.py`` (time recorded apart from training) and stops the fit by the rules of
``runner_common.py``.
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

HIDDEN, BLOCKS, HEADS, FFN, DROPOUT, MAX_LEN, BATCH, LR = 128, 2, 2, 512, 0.5, 50, 256, 1e-3
WORK_DIR = "/work/venvs/replay_work/peer_beauty"  # Lightning's files (none are written: no logger, no checkpoints)


def write_train_parquet(train: list[np.ndarray], users: np.ndarray, num_items: int, path: Path) -> None:
    """One row per training sequence: ``user_id`` and ``item_id`` (RePlay ids = padrec ids - 1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    offsets = np.concatenate([[0], np.cumsum([len(s) for s in train])]).astype(np.int32)
    flat = np.concatenate(train).astype(np.int64) - 1
    if flat.min() < 0 or flat.max() >= num_items:
        raise SystemExit("item ids outside 1..N in the exported training sequences")
    items = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    table = pa.table({"user_id": pa.array(users.astype(np.int64)), "item_id": items})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def build_model(num_items: int, loss_name: str):
    """RePlay's SasRec at FAERec's size: 128 hidden, 2 blocks, 2 heads, FFN 512, GELU, dropout 0.5;
    ``loss_name``: ``ce`` (full softmax) or ``sampled`` (CESampled)."""
    import torch
    from replay.data import FeatureHint, FeatureSource, FeatureType
    from replay.data.nn import TensorFeatureInfo, TensorFeatureSource, TensorSchema
    from replay.nn.agg import SumAggregator
    from replay.nn.embedding import SequenceEmbedding
    from replay.nn.loss import CE, CESampled
    from replay.nn.mask import DefaultAttentionMask
    from replay.nn.sequential import PositionAwareAggregator, SasRec, SasRecBody, SasRecTransformerLayer

    schema = TensorSchema(
        [
            TensorFeatureInfo(
                "item_id",
                is_seq=True,
                feature_type=FeatureType.CATEGORICAL,
                embedding_dim=HIDDEN,
                padding_value=num_items,
                cardinality=num_items,
                feature_hint=FeatureHint.ITEM_ID,
                feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, "item_id")],
            )
        ]
    )
    body = SasRecBody(
        embedder=SequenceEmbedding(schema=schema),
        embedding_aggregator=PositionAwareAggregator(
            embedding_aggregator=SumAggregator(embedding_dim=HIDDEN), max_sequence_length=MAX_LEN, dropout=DROPOUT
        ),
        attn_mask_builder=DefaultAttentionMask(reference_feature_name="item_id", num_heads=HEADS),
        encoder=SasRecTransformerLayer(
            embedding_dim=HIDDEN, num_heads=HEADS, num_blocks=BLOCKS, dropout=DROPOUT, activation="gelu", hidden_dim=FFN
        ),
        output_normalization=torch.nn.LayerNorm(HIDDEN),
    )
    loss = CE(ignore_index=num_items) if loss_name == "ce" else CESampled()
    return schema, SasRec(body=body, loss=loss)


def main(argv: list[str] | None = None) -> int:
    def own_options(ap) -> None:
        ap.add_argument("--loss", choices=("sampled", "ce"), default="sampled", help="sampled CE (default) or full CE")
        ap.add_argument("--negatives", type=int, default=2048, help="uniform negatives per batch (--loss sampled)")

    args = rc.parse_args("replay", argv, description=__doc__.splitlines()[0], extra=own_options)
    args.out, args.split = os.path.abspath(args.out), os.path.abspath(args.split)
    os.makedirs(WORK_DIR, exist_ok=True)
    os.chdir(WORK_DIR)

    import lightning as L  # noqa: N812
    import replay
    import torch
    from replay.data.nn import ParquetModule
    from replay.nn.lightning import LightningModule
    from replay.nn.lightning.optimizer import OptimizerFactory
    from replay.nn.transform import UniformNegativeSamplingTransform
    from replay.nn.transform.template import make_default_sasrec_transforms

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    split = fp.load_split(args.split)
    N = split["num_items"]
    valid, test = split["valid"].head(args.eval_users), split["test"].head(args.eval_users)
    train_path = Path(os.path.dirname(args.split)) / "replay" / "train.parquet"
    write_train_parquet(split["train"], split["train_users"], N, train_path)
    L.seed_everything(args.seed, workers=True, verbose=False)
    schema, model = build_model(N, args.loss)
    transforms = make_default_sasrec_transforms(schema)
    if args.loss == "sampled":
        sampler = torch.Generator().manual_seed(args.seed + 1)
        transforms["train"].append(
            UniformNegativeSamplingTransform(cardinality=N, num_negative_samples=args.negatives, generator=sampler)
        )
    metadata = {"train": {"user_id": {}, "item_id": {"shape": MAX_LEN + 1, "padding": N}}}
    datamodule = ParquetModule(
        batch_size=BATCH,
        metadata=metadata,
        transforms=transforms,
        config={"train": {"generator": torch.Generator().manual_seed(args.seed), "device": torch.device("cpu")}},
        train_path=str(train_path),
    )
    optimizer = OptimizerFactory(optimizer="adam", learning_rate=LR)
    module = LightningModule(model, optimizer_factory=optimizer)
    t_data = time.perf_counter() - t0
    full_steps = -(-len(split["train"]) // BATCH)

    def score(hist: torch.Tensor) -> torch.Tensor:
        x = torch.where(hist > 0, hist - 1, torch.full_like(hist, N))
        out = module({"feature_tensors": {"item_id": x}, "padding_mask": hist > 0})
        logits = out["logits"]  # (B, N): RePlay ids 0..N-1 = padrec ids 1..N
        return torch.cat([torch.full((len(hist), 1), -torch.inf), logits], dim=1)

    settings = {
        "api": "replay.nn.sequential.SasRec + replay.nn.lightning.LightningModule + replay.data.nn.ParquetModule",
        "embedding_dim": HIDDEN,
        "num_blocks": BLOCKS,
        "num_heads": HEADS,
        "ffn_hidden_dim": FFN,
        "activation": "gelu",
        "dropout": DROPOUT,
        "max_sequence_length": MAX_LEN,
        "loss": (
            "CE (full softmax over all items, torch.nn.CrossEntropyLoss, ignore_index = padding)"
            if args.loss == "ce"
            else f"CESampled with UniformNegativeSamplingTransform: {args.negatives} uniform negatives per batch "
            "(shared by its positions; a negative equal to the position's positive is masked)"
        ),
        "optimizer": {
            "name": optimizer.optimizer,
            "lr": optimizer.learning_rate,
            "betas": list(optimizer.betas),
            "weight_decay": optimizer.weight_decay,
        },
        "batch_size": BATCH,
        "transforms": "make_default_sasrec_transforms (next token, loss at every position)",
        "seed": args.seed,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    versions = {
        "replay-rec": replay.__version__,
        "torch": torch.__version__,
        "lightning": L.__version__,
        "numpy": np.__version__,
    }
    log = rc.RunLog(args, "RePlay", versions, settings)
    log.note(
        counts={
            "train_sequences": len(split["train"]),
            "steps_per_full_epoch": full_steps,
            "valid_users": len(valid),
            "test_users": len(test),
            "num_items": N,
        },
        seconds_data_preparation=round(t_data, 3),
        setup_notes=(
            "RePlay trains each user's window once with a loss at every position, as padrec; its default "
            "transforms also train the first item of a sequence shorter than 51 from a padding position "
            "(padrec does not); Adam betas (0.9, 0.98) are RePlay's default (padrec: torch's (0.9, 0.999))."
        ),
    )
    print(
        f"RePlay {replay.__version__}: {len(split['train']):,} sequences, {full_steps} steps/full epoch, "
        f"{len(valid):,} valid / {len(test):,} test users, {N:,} items, data {t_data:.1f}s",
        flush=True,
    )

    class EpochEnd(L.Callback):
        """Times each training epoch; evaluates and applies the stopping rules at its end."""

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.t, self.losses = time.perf_counter(), []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(float(loss))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            train_s = time.perf_counter() - self.t
            t = time.perf_counter()
            pl_module.eval()
            v = fp.evaluate_scores(score, valid, N, batch_size=args.eval_batch)
            te = fp.evaluate_scores(score, test, N, batch_size=args.eval_batch)
            pl_module.train()
            eval_s = time.perf_counter() - t
            epoch = trainer.current_epoch + 1
            mean_loss = float(np.mean(self.losses)) if self.losses else float("nan")
            if log.end_epoch(epoch, train_s, mean_loss, len(self.losses), v, te, eval_s):
                trainer.should_stop = True

    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        limit_train_batches=args.max_steps_per_epoch or 1.0,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[EpochEnd()],
        default_root_dir=WORK_DIR,
    )
    try:
        trainer.fit(module, datamodule=datamodule)
    except KeyboardInterrupt:
        log.finish("interrupted")
        return 130
    if log.stop_reason is None:
        log.stop_reason = "fit ended (Trainer max_epochs)"
    log.finish()
    print(f"stop: {log.stop_reason}; wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
