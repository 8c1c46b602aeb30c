"""Optimisers and learning-rate schedules built from a :class:`TrainConfig`.

The schedule is a pure function of the optimiser step, so a resumed phase continues on the
same curve without any scheduler state in its checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from padrec.training.config import TrainConfig


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` over ``params`` at the peak learning rate."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected adamw, adam or sgd")


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of a phase of ``total_steps``.

    Linear warm-up over ``warmup_steps`` (lr·(step+1)/warmup), then ``constant`` (lr),
    ``linear`` or ``cosine`` decay from lr to ``final_lr_ratio``·lr at the last step.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, total_steps - cfg.warmup_steps - 1)
    t = min(1.0, max(0, step - cfg.warmup_steps) / span)
    low = cfg.final_lr_ratio
    if cfg.schedule == "linear":
        factor = 1.0 - (1.0 - low) * t
    elif cfg.schedule == "cosine":
        factor = low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; expected constant, linear or cosine")
    return cfg.lr * factor


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr
