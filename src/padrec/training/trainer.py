"""One trainer for every method and phase: batches, AdamW, early stopping, checkpoints, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from padrec.data.protocols import EvalSet, Split
from padrec.evaluation import EvalConfig, EvalResult, evaluate
from padrec.methods.base import Method, TrainBatch
from padrec.training.checkpoint import (
    load_training_state,
    load_weights,
    read_json,
    save_training_state,
    save_weights,
    write_json,
)
from padrec.training.memory import release_freed_memory

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation and early-stopping settings (per phase overridable by the method).

    Attributes:
        epochs: maximum epochs.
        batch_size: training sequences per batch (128: every position of a sequence is a
            target, so an epoch has few steps; smaller batches converge in fewer epochs).
        lr: AdamW learning rate (3e-3 converges SASRec/GRU4Rec on Prime Pantry in ~15-25
            epochs; 1e-3 needs 2-3x more).
        weight_decay: AdamW decoupled weight decay.
        grad_clip: max gradient norm (0 = off).
        patience: stop after this many validations without improvement of ``monitor``.
        monitor: validation metric chosen for early stopping and model selection.
        min_epochs: never stop before this many epochs.
        valid_users: validate on a fixed random sample of this many users (0 = all).
        seed: seeds parameter init, shuffling, negatives and dropout.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available).
        num_threads: torch intra-op threads (0 = leave torch's default).
        max_minutes: stop a phase after this much wall time (0 = no limit).
        progress: show a progress bar with loss, rate and ETA.
        trim_memory_every: on Linux/glibc, hand freed heap memory back to the OS every this
            many batches and after each validation (0 = never); see
            :mod:`padrec.training.memory`. It bounds the resident size, not the results.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    patience: int = 10
    monitor: str = "NDCG@10"
    min_epochs: int = 0
    valid_users: int = 0
    seed: int = 42
    device: str = "auto"
    num_threads: int = 0
    max_minutes: float = 0.0
    progress: bool = True
    trim_memory_every: int = 20


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


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' requested but CUDA is not available")
    return dev


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def fingerprint(*parts: Any) -> str:
    """A short sha256 of JSON-serialisable parts, numpy arrays and tensors."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        elif torch.is_tensor(p):
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def make_score_fn(method: Method):
    """Wrap ``method.score_all`` for the evaluator: eval mode, no autograd."""

    def score(histories: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return method.score_all(histories)

    return score


class Trainer:
    """Runs one phase of any :class:`Method` on a :class:`Split`.

    Files written under ``phase_dir``: ``best.safetensors`` (best-validation weights of the
    parameters this phase trains),
    ``last.safetensors`` + ``last.optim.safetensors`` (resumable state) and ``state.json``
    (epoch, best value, history, the fingerprint of everything the phase depends on).
    """

    def __init__(self, method: Method, split: Split, config: TrainConfig, eval_config: EvalConfig) -> None:
        self.method = method
        self.split = split
        self.config = config
        self.eval_config = eval_config
        self.device = resolve_device(config.device)

    def validation_set(self) -> EvalSet:
        valid = self.split.valid
        n = self.config.valid_users
        if n and n < len(valid):
            idx = np.random.default_rng(self.config.seed).choice(len(valid), size=n, replace=False)
            return valid.subset(np.sort(idx))
        return valid

    def validate(self, eval_set: EvalSet) -> EvalResult:
        self.method.eval()
        result = evaluate(make_score_fn(self.method), eval_set, None, self.eval_config, device=self.device)
        if self.config.trim_memory_every:
            release_freed_memory()
        return result

    def fit(self, phase: str, phase_dir: str | Path, fp: str) -> PhaseResult:
        """Train ``phase`` with early stopping; on return the method holds the best weights.

        ``fp`` fingerprints the phase's inputs: a finished phase with the same fingerprint
        is reused (weights loaded, no training); an unfinished one resumes from its last epoch.
        """
        cfg = self.config
        phase_dir = Path(phase_dir)
        phase_dir.mkdir(parents=True, exist_ok=True)
        state_path = phase_dir / "state.json"
        method = self.method.to(self.device)
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)

        state = read_json(state_path) if state_path.exists() else None
        if state is not None and state.get("fingerprint") != fp:
            log.warning("%s: inputs changed since the saved run; training phase '%s' afresh", phase_dir, phase)
            state = None
        params = method.trainable_parameters()
        ids = {id(p) for p in params}
        self.phase_keys = {n for n, p in method.named_parameters() if id(p) in ids}
        if state is not None and state.get("finished"):
            load_weights(method, phase_dir / "best.safetensors", partial=True)
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

        if not params:  # e.g. a fixed equal-weight gate over frozen experts: validate once, keep as is
            value = self.validate(self.validation_set()).overall[cfg.monitor]
            history = [{"epoch": 0, f"valid_{cfg.monitor}": value}]
            save_weights(method, phase_dir / "best.safetensors", only=self.phase_keys)
            self._save_last(phase_dir, None, None, fp, -1, value, -1, 0, history, 0.0, finished=True)
            return PhaseResult(phase, 0, value, 0, 0.0, 0.0, "nothing_to_train", history)

        # Negatives and dropout draw from the global generator: seed it here so a phase's
        # numbers do not depend on what ran before it in the process.
        torch.manual_seed(cfg.seed)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        start_epoch, best_value, best_epoch, bad, history, train_seconds = 0, -math.inf, -1, 0, [], 0.0
        if state is not None and (phase_dir / "last.optim.safetensors").exists():
            load_weights(method, phase_dir / "last.safetensors", partial=True)
            rng, _ = load_training_state(phase_dir / "last.optim.safetensors", optimizer)
            torch.set_rng_state(rng["torch"])
            shuffle.set_state(rng["shuffle"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda"])
            start_epoch = state["epoch"] + 1
            best_value, best_epoch, bad = state["best_value"], state["best_epoch"], state["bad_epochs"]
            history, train_seconds = state["history"], state["train_seconds"]
            log.info("resuming phase '%s' at epoch %d", phase, start_epoch + 1)

        inputs = torch.from_numpy(self.split.train_inputs)
        targets = torch.from_numpy(self.split.train_targets)
        users = torch.from_numpy(self.split.train_users)
        n = len(inputs)
        n_batches = math.ceil(n / cfg.batch_size)
        valid = self.validation_set()
        stopped: str = "epochs"
        t_phase = time.perf_counter()
        epoch = start_epoch - 1
        for epoch in range(start_epoch, cfg.epochs):
            method.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=shuffle)
            totals: dict[str, float] = {}
            bar = tqdm(
                range(n_batches),
                desc=f"{phase} {epoch + 1}/{cfg.epochs}",
                unit="batch",
                disable=not cfg.progress,
                leave=False,
                dynamic_ncols=True,
            )
            for b in bar:
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                batch = TrainBatch(inputs[idx], targets[idx], users[idx]).to(self.device)
                parts = method.losses(batch)
                loss = sum(parts.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                for k, v in parts.items():
                    totals[k] = totals.get(k, 0.0) + float(v.detach())
                if cfg.trim_memory_every and (b + 1) % cfg.trim_memory_every == 0:
                    release_freed_memory()
                if b % 10 == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            bar.close()
            epoch_train = time.perf_counter() - t0
            train_seconds += epoch_train
            t1 = time.perf_counter()
            result = self.validate(valid)
            value = result.overall[cfg.monitor]
            row = {
                "epoch": epoch + 1,
                **{f"loss_{k}": v / n_batches for k, v in totals.items()},
                f"valid_{cfg.monitor}": value,
                "train_s": round(epoch_train, 3),
                "valid_s": round(time.perf_counter() - t1, 3),
            }
            history.append(row)
            improved = value > best_value
            if improved:
                best_value, best_epoch, bad = value, epoch, 0
                save_weights(method, phase_dir / "best.safetensors", only=self.phase_keys)
            else:
                bad += 1
            losses_txt = " ".join(f"{k}={v / n_batches:.4f}" for k, v in totals.items())
            tqdm.write(
                f"[{phase}] epoch {epoch + 1:3d}  {losses_txt}  valid {cfg.monitor}={value:.4f}"
                f"{' *' if improved else ''}  ({epoch_train:.1f}s train, {row['valid_s']:.1f}s valid)"
            )
            self._save_last(
                phase_dir,
                optimizer,
                shuffle,
                fp,
                epoch,
                best_value,
                best_epoch,
                bad,
                history,
                train_seconds,
                finished=False,
            )
            if bad >= cfg.patience and epoch + 1 >= cfg.min_epochs:
                stopped = "patience"
                break
            if cfg.max_minutes > 0 and (time.perf_counter() - t_phase) / 60 > cfg.max_minutes:
                stopped = "time"
                break
        epochs_run = epoch + 1
        if best_epoch < 0:
            raise RuntimeError(f"phase '{phase}' ran no epoch (epochs={cfg.epochs})")
        load_weights(method, phase_dir / "best.safetensors", partial=True)
        spe = train_seconds / max(1, len(history))
        self._save_last(
            phase_dir,
            optimizer,
            shuffle,
            fp,
            epochs_run - 1,
            best_value,
            best_epoch,
            bad,
            history,
            train_seconds,
            finished=True,
            seconds_per_epoch=spe,
        )
        return PhaseResult(phase, best_epoch + 1, best_value, epochs_run, spe, train_seconds, stopped, history)

    def _save_last(
        self,
        phase_dir: Path,
        optimizer,
        shuffle,
        fp,
        epoch,
        best_value,
        best_epoch,
        bad,
        history,
        train_seconds,
        finished: bool,
        seconds_per_epoch: float = 0.0,
    ) -> None:
        if not finished:
            save_weights(self.method, phase_dir / "last.safetensors", only=self.phase_keys)
            rng = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
            if self.device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(self.device)
            save_training_state(phase_dir / "last.optim.safetensors", optimizer, rng, {})
        write_json(
            phase_dir / "state.json",
            {
                "fingerprint": fp,
                "epoch": epoch,
                "best_value": best_value,
                "best_epoch": best_epoch,
                "bad_epochs": bad,
                "history": history,
                "train_seconds": train_seconds,
                "finished": finished,
                "seconds_per_epoch": seconds_per_epoch,
                "monitor": self.config.monitor,
            },
        )
        if finished:
            for name in ("last.safetensors", "last.optim.safetensors", "last.optim.json"):
                (phase_dir / name).unlink(missing_ok=True)


def phase_config(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``base`` with a phase's overrides applied (unknown keys are an error)."""
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise KeyError(f"phase overrides name unknown training fields: {bad}")
    return dataclasses.replace(base, **overrides)
