"""Training settings: optimiser, schedule, batches, precision, early stopping, devices."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from padrec.config import setting


@dataclass
class TrainConfig:
    """Optimisation and early-stopping settings (per phase overridable by the method and by
    the experiment's ``phase_train``).

    Attributes:
        epochs: maximum epochs.
        batch_size: training examples per optimiser step, over all data-parallel processes
            together (128: every position of a sequence is a target, so an epoch has few
            steps; smaller batches converge in fewer epochs).
        grad_accumulation: micro-batches each optimiser step is computed in (each process
            splits its share of the batch); the same global batch in less memory.
        optimizer: ``adamw`` (decoupled weight decay), ``adam`` or ``sgd``.
        lr: peak learning rate (3e-3 converges SASRec/GRU4Rec on Prime Pantry in ~15-25
            epochs with AdamW; 1e-3 needs 2-3x more).
        betas: Adam/AdamW (β1, β2).
        momentum: SGD momentum.
        weight_decay: weight decay (decoupled for AdamW).
        schedule: learning rate over the phase's optimiser steps: ``constant``, ``linear``
            (decay to ``final_lr_ratio``·lr at the last step of ``epochs``) or ``cosine``.
        warmup_steps: linear warm-up from 0 over this many optimiser steps (any schedule).
        final_lr_ratio: the decaying schedules end at this fraction of ``lr``.
        grad_clip: max gradient norm (0 = off).
        precision: ``fp32``, ``bf16`` (autocast of the forward pass; for CUDA, where it
            halves memory traffic; on CPU it runs, usually slower) or ``auto`` (bf16 on a CUDA
            device with bf16 support, fp32 elsewhere: one config for a laptop and a GPU).
        patience: stop after this many validations without improvement of ``monitor``.
        monitor: the validation metric for early stopping, model selection and summaries,
            e.g. ``NDCG@10``, or one qualified by a target group, e.g. ``tail/NDCG@10``; its
            K must be one of ``eval.ks``.
        min_epochs: never stop before this many epochs.
        validate_from: the first epoch (counted from 1) that is validated; earlier epochs
            only train, and model selection and ``patience`` start there (0 or 1 = every
            epoch). FAERec's release trains 200 epochs before its first validation
            (``star_test``), which is ``validate_from: 202`` here (its epochs count from 0 and
            it validates once ``epoch > star_test``).
        valid_users: validate on a fixed random sample of this many users (0 = all).
        seed: seeds parameter init, shuffling, negatives and dropout.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available); under
            torchrun each process takes ``cuda:LOCAL_RANK``.
        num_threads: torch intra-op threads; 0 = a fair share of the cores among the padrec
            jobs (and data-parallel processes) running on the machine, re-balanced as jobs
            start and end (:mod:`padrec.training.threads`).
        max_minutes: stop a phase after this much wall time (0 = no limit).
        progress: show a progress bar with loss, rate and ETA.
        trim_memory_every: on Linux/glibc, check the resident size every this many batches
            and hand freed heap memory back to the OS when it has grown a quarter (at least
            256 MB) past the plateau of the first checks, and after each validation (0 = never); see
            :mod:`padrec.training.memory`. It bounds the resident size, not the results.
    """

    epochs: int = 200
    batch_size: int = 128
    grad_accumulation: int = 1
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 3e-3
    betas: list[float] = setting(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    final_lr_ratio: float = 0.0
    grad_clip: float = 0.0
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    patience: int = 10
    monitor: str = "NDCG@10"
    min_epochs: int = 0
    validate_from: int = setting(0, legacy=0)
    valid_users: int = 0
    seed: int = 42
    device: str = setting("auto", fingerprint=False)
    num_threads: int = setting(0, fingerprint=False)
    max_minutes: float = 0.0
    progress: bool = setting(True, fingerprint=False)
    trim_memory_every: int = setting(20, fingerprint=False)

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("grad_accumulation", self.grad_accumulation >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("final_lr_ratio", 0 <= self.final_lr_ratio <= 1, "in [0, 1]"),
            ("grad_clip", self.grad_clip >= 0, ">= 0 (0 = off)"),
            ("patience", self.patience >= 1, ">= 1"),
            ("min_epochs", self.min_epochs >= 0, ">= 0"),
            ("validate_from", 0 <= self.validate_from <= self.epochs, f"in [0, epochs={self.epochs}]"),
            ("valid_users", self.valid_users >= 0, ">= 0 (0 = all)"),
            ("num_threads", self.num_threads >= 0, ">= 0 (0 = default)"),
            ("max_minutes", self.max_minutes >= 0, ">= 0 (0 = no limit)"),
            ("trim_memory_every", self.trim_memory_every >= 0, ">= 0 (0 = never)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        from padrec.evaluation.metrics import parse_metric

        try:
            parse_metric(self.monitor.rpartition("/")[2])
        except ValueError as exc:
            raise ValueError(f"monitor: {exc}") from None


def phase_config(base: TrainConfig, overrides: dict[str, Any], where: str = "phase overrides") -> TrainConfig:
    """``base`` with a phase's overrides applied; unknown keys and bad values are errors naming ``where``."""
    from padrec.config import ConfigError, from_dict, to_dict

    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ConfigError(f"{where}: unknown training field(s) {bad}; valid: {sorted(valid)}")
    return from_dict(TrainConfig, {**to_dict(base), **overrides}, where=where)
