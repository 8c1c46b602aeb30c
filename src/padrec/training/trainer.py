"""One trainer for every method and phase: batches, optimiser steps, early stopping,
checkpoints, resume, data parallelism."""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from padrec.data.protocols import EvalSet, Split
from padrec.devices import resolve_device, resolve_precision
from padrec.evaluation import EvalConfig, EvalResult, evaluate
from padrec.evaluation.metrics import parse_metric
from padrec.io import read_json, write_json
from padrec.methods.base import Method
from padrec.methods.batches import BatchSettings, StepInfo, WindowBatches
from padrec.training.checkpoint import load_training_state, load_weights, save_training_state, save_weights
from padrec.training.config import TrainConfig, phase_config
from padrec.training.distributed import Distributed
from padrec.training.memory import HeapTrimmer
from padrec.training.optim import build_optimizer, learning_rate, set_learning_rate
from padrec.training.threads import refresh as refresh_threads

__all__ = ["PhaseResult", "TrainConfig", "Trainer", "make_score_fn", "phase_config", "resolve_device", "set_seed"]

log = logging.getLogger(__name__)


@dataclass
class PhaseResult:
    """What one phase's training did."""

    phase: str
    best_epoch: int
    best_value: float
    epochs_run: int
    seconds_per_epoch: float
    train_seconds: float
    stopped: Literal["patience", "epochs", "time", "reused", "nothing_to_train"]
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Progress:
    """Where a phase's training stands; saved in ``state.json`` after every epoch."""

    epoch: int = -1  # last finished epoch, 0-based
    best_value: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Progress:
        return cls(
            state["epoch"],
            state["best_value"],
            state["best_epoch"],
            state["bad_epochs"],
            state["history"],
            state["train_seconds"],
        )

    def state(self, fp: str, finished: bool, seconds_per_epoch: float, monitor: str) -> dict[str, Any]:
        return {
            "fingerprint": fp,
            "epoch": self.epoch,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "finished": finished,
            "seconds_per_epoch": seconds_per_epoch,
            "monitor": monitor,
        }


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_score_fn(method: Method):
    """Wrap ``method.score_all`` for the evaluator: no autograd."""

    def score(histories: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return method.score_all(histories)

    return score


class Trainer:
    """Runs one phase of any :class:`Method` on a :class:`Split`.

    Files written under ``phase_dir`` (by rank 0 only when data-parallel):
    ``best.safetensors`` (best-validation weights of the parameters this phase trains),
    ``last-EEEE/`` (the resumable state after epoch EEEE: ``weights.safetensors``,
    ``optim.safetensors`` + ``optim.json`` with the optimiser and RNG states) and ``state.json``
    (epoch, best value, history, the fingerprint of everything the phase depends on).
    """

    def __init__(
        self,
        method: Method,
        split: Split,
        config: TrainConfig,
        eval_config: EvalConfig,
        world: Distributed | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.method = method
        self.split = split
        self.config = config
        self.eval_config = eval_config
        self.world = world or Distributed()
        self.device = device or resolve_device(config.device)
        self._heap = HeapTrimmer()

    def validation_set(self) -> EvalSet:
        """The validation users (a fixed sample of ``valid_users`` of them when set)."""
        return self.split.valid.sample(self.config.valid_users, self.config.seed)

    def validate(self, eval_set: EvalSet) -> EvalResult:
        """The method's validation result on ``eval_set``; top-K lists are kept only when the
        monitored metric is a coverage (HR and NDCG need the target's rank alone)."""
        self.method.eval()
        kind, _ = parse_metric(self.config.monitor.rpartition("/")[2])
        cfg, topk = self.eval_config, kind not in ("HR", "NDCG")
        result = evaluate(
            make_score_fn(self.method), eval_set, None, cfg, self.device, False, self.config.monitor, topk
        )
        if self.config.trim_memory_every:
            self._heap.trim()
        return result

    def _monitored(self, eval_set: EvalSet) -> float:
        """The monitored validation value, computed on rank 0 and shared with every process."""
        value = self.validate(eval_set).main() if self.world.is_main else 0.0
        return self.world.broadcast_float(value)

    def fit(self, phase: str, phase_dir: str | Path, fp: str) -> PhaseResult:
        """Train ``phase`` with early stopping; on return the method holds the best weights.

        ``fp`` fingerprints the phase's inputs: a finished phase with the same fingerprint
        is reused (weights loaded, no training); an unfinished one resumes from its last epoch.
        """
        cfg, world = self.config, self.world
        method = self.method.to(self.device)
        if method.phase != phase:
            method.begin_phase(phase)
        phase_dir = Path(phase_dir)
        state_path = phase_dir / "state.json"
        state = read_json(state_path) if state_path.exists() else None
        if state is not None and state.get("fingerprint") != fp:
            log.warning("%s: inputs changed since the saved run; training phase '%s' afresh", phase_dir, phase)
            state = None
        params = method.trainable_parameters()
        ids = {id(p) for p in params}
        self.phase_keys = {n for n, p in method.named_parameters() if id(p) in ids}
        if state is not None and state.get("finished"):
            load_weights(method, phase_dir / "best.safetensors", partial=True)
            if world.is_main:
                tqdm.write(f"[{phase}] finished earlier with the same inputs: reused ({phase_dir})")
            return PhaseResult(
                phase,
                state["best_epoch"] + 1,
                state["best_value"],
                state["epoch"] + 1,
                state["seconds_per_epoch"],
                state["train_seconds"],
                "reused",
                state["history"],
            )
        if world.is_main:
            phase_dir.mkdir(parents=True, exist_ok=True)

        if not params:  # e.g. a fixed equal-weight gate over frozen experts: validate once, keep as is
            value = self._monitored(self.validation_set())
            done = _Progress(best_value=value, history=[{"epoch": 0, f"valid_{cfg.monitor}": value}])
            if world.is_main:
                save_weights(method, phase_dir / "best.safetensors", only=self.phase_keys)
                self._save_state(phase_dir, done, fp, finished=True)
            return PhaseResult(phase, 0, value, 0, 0.0, 0.0, "nothing_to_train", done.history)

        # Negatives and dropout draw from the global generator: seed it here so a phase's
        # numbers do not depend on what ran before it in the process.
        torch.manual_seed(cfg.seed)
        optimizer = build_optimizer(params, cfg)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        prog = _Progress()
        last = phase_dir / state["last"] if state is not None and state.get("last") else None
        if last is not None and (last / "optim.safetensors").exists():
            load_weights(method, last / "weights.safetensors", partial=True)
            rng, _ = load_training_state(last / "optim.safetensors", optimizer)
            torch.set_rng_state(rng["torch"])
            shuffle.set_state(rng["shuffle"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda"], self.device)
            prog = _Progress.from_state(state)
            if world.is_main:
                tqdm.write(f"[{phase}] resuming at epoch {prog.epoch + 2} from {last}")

        settings = BatchSettings(cfg.batch_size, cfg.grad_accumulation, world.rank, world.world_size)
        make_batches = method.current_phase.batches or WindowBatches.from_split
        batches = make_batches(self.split, settings)
        steps = batches.steps_per_epoch()
        model, restore = self._wrap(method, ids)
        valid = self.validation_set()
        stopped: str = "epochs"
        t_phase = time.perf_counter()
        try:
            for epoch in range(prog.epoch + 1, cfg.epochs):
                if world.enabled:  # each process its own dropout and negatives, the same after a resume
                    torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + world.rank)
                method.train()
                t0 = time.perf_counter()
                totals = self._epoch(model, optimizer, params, batches, shuffle, epoch, steps, phase)
                totals = world.mean(totals)
                epoch_train = time.perf_counter() - t0
                prog.train_seconds += epoch_train
                validated = epoch + 1 >= cfg.validate_from
                t1 = time.perf_counter()
                value = self._monitored(valid) if validated else math.nan
                row = {
                    "epoch": epoch + 1,
                    **{f"loss_{k}": v / steps for k, v in totals.items()},
                    **({f"valid_{cfg.monitor}": value} if validated else {}),
                    "train_s": round(epoch_train, 3),
                    "valid_s": round(time.perf_counter() - t1, 3),
                }
                prog.history.append(row)
                prog.epoch = epoch
                improved = validated and value > prog.best_value
                if improved:
                    prog.best_value, prog.best_epoch, prog.bad_epochs = value, epoch, 0
                    if world.is_main:
                        save_weights(method, phase_dir / "best.safetensors", only=self.phase_keys)
                elif validated:
                    prog.bad_epochs += 1
                if world.is_main:
                    losses_txt = " ".join(f"{k}={v / steps:.4f}" for k, v in totals.items())
                    valid_txt = f"valid {cfg.monitor}={value:.4f}{' *' if improved else ''}"
                    valid_txt = valid_txt if validated else f"(validation from epoch {cfg.validate_from})"
                    tqdm.write(
                        f"[{phase}] epoch {epoch + 1:3d}  {losses_txt}  {valid_txt}"
                        f"  ({epoch_train:.1f}s train, {row['valid_s']:.1f}s valid)"
                    )
                    self._save_state(phase_dir, prog, fp, finished=False, optimizer=optimizer, shuffle=shuffle)
                if prog.bad_epochs >= cfg.patience and epoch + 1 >= cfg.min_epochs:
                    stopped = "patience"
                    break
                if cfg.max_minutes > 0 and world.broadcast_float(time.perf_counter() - t_phase) / 60 > cfg.max_minutes:
                    stopped = "time"
                    break
        finally:
            restore()
        if prog.best_epoch < 0 and prog.epoch >= 0:  # stopped by time before validate_from
            prog.best_value, prog.best_epoch = self._monitored(valid), prog.epoch
            prog.history[-1][f"valid_{cfg.monitor}"] = prog.best_value
            if world.is_main:
                save_weights(method, phase_dir / "best.safetensors", only=self.phase_keys)
        if prog.best_epoch < 0:
            raise RuntimeError(f"phase '{phase}' ran no epoch (epochs={cfg.epochs})")
        world.barrier()
        load_weights(method, phase_dir / "best.safetensors", partial=True)
        spe = prog.train_seconds / max(1, len(prog.history))
        if world.is_main:
            self._save_state(phase_dir, prog, fp, finished=True, seconds_per_epoch=spe)
        world.barrier()
        return PhaseResult(
            phase, prog.best_epoch + 1, prog.best_value, prog.epoch + 1, spe, prog.train_seconds, stopped, prog.history
        )

    def _wrap(self, method: Method, trained: set[int]):
        """The module to call for losses: the method itself, or DDP over the phase's
        parameters when data-parallel. Returns it and a function undoing the wrapping."""
        if not self.world.enabled:
            return method, lambda: None
        flags = {p: p.requires_grad for p in method.parameters()}
        for p in method.parameters():
            p.requires_grad_(id(p) in trained and flags[p])
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Buffers (text matrices, priors) never change in training: sync them once, not every step.
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
            buffers = {"forward_sync_buffers": False}
        else:  # torch before 2.13
            buffers = {"broadcast_buffers": False}
        # Every parameter a phase trains must take part in its loss (DDP's default, without the
        # extra graph traversal of find_unused_parameters).
        model = DistributedDataParallel(method, device_ids=device_ids, **buffers)

        def restore() -> None:
            for p, flag in flags.items():
                p.requires_grad_(flag)

        return model, restore

    def _epoch(
        self, model, optimizer, params, batches, shuffle, epoch: int, steps: int, phase: str
    ) -> dict[str, float]:
        """One epoch of optimiser steps; returns the summed loss terms (divide by ``steps``)."""
        cfg = self.config
        totals: dict[str, float] = {}
        total_steps = steps * cfg.epochs
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if resolve_precision(cfg.precision, self.device) == "bf16"
            else contextlib.nullcontext()
        )
        bar = tqdm(
            batches.epoch(shuffle),
            total=steps,
            desc=f"{phase} {epoch + 1}/{cfg.epochs}",
            unit="step",
            disable=not cfg.progress or not self.world.is_main,
            leave=False,
            dynamic_ncols=True,
        )
        for b, micro in enumerate(bar):
            refresh_threads()  # share the cores with jobs that started or ended meanwhile
            info = StepInfo(epoch, b, steps, cfg.epochs)
            set_learning_rate(optimizer, learning_rate(cfg, info.global_step, total_steps))
            optimizer.zero_grad(set_to_none=True)
            for i, mb in enumerate(micro):
                sync = contextlib.nullcontext() if i == len(micro) - 1 or not self.world.enabled else model.no_sync()
                with sync:
                    with autocast:
                        parts = model(mb.to(self.device), info)
                    loss = sum(parts.values())
                    if len(micro) > 1:
                        loss = loss / len(micro)
                    loss.backward()
                for k, v in parts.items():
                    value = float(v.detach())
                    if not math.isfinite(value):
                        raise FloatingPointError(
                            f"phase '{phase}': loss '{k}' became {value} at epoch {epoch + 1}, step {b + 1} "
                            "(try a lower train.lr, or train.grad_clip)"
                        )
                    totals[k] = totals.get(k, 0.0) + value / len(micro)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            if cfg.trim_memory_every and (b + 1) % cfg.trim_memory_every == 0:
                self._heap.maybe_trim()
            if b % 10 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()) * len(micro):.4f}")
        bar.close()
        return totals

    def _save_state(
        self,
        phase_dir: Path,
        prog: _Progress,
        fp: str,
        finished: bool,
        optimizer=None,
        shuffle=None,
        seconds_per_epoch: float = 0.0,
    ) -> None:
        """``state.json``; while unfinished, first the resumable state of the epoch in a new
        ``last-EEEE/`` directory. ``state.json`` names the directory and is written last, so a
        kill at any moment leaves a state.json whose files are complete; older directories
        (and, once finished, all of them) are removed afterwards."""
        last = None
        if not finished:
            last = phase_dir / f"last-{prog.epoch + 1:04d}"
            save_weights(self.method, last / "weights.safetensors", only=self.phase_keys)
            rng = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
            if self.device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(self.device)
            save_training_state(last / "optim.safetensors", optimizer, rng, {})
        state = prog.state(fp, finished, seconds_per_epoch, self.config.monitor)
        state["last"] = last.name if last is not None else None
        write_json(phase_dir / "state.json", state)
        for old in phase_dir.glob("last-*"):
            if old != last and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        for name in ("last.safetensors", "last.optim.safetensors", "last.optim.json"):  # earlier layout
            (phase_dir / name).unlink(missing_ok=True)
