"""Run an experiment end to end: data -> split -> (text) -> method phases -> test metrics.

``run_experiment`` writes a self-describing run directory::

    RUN_DIR/config.json             the resolved experiment config (method config included)
    RUN_DIR/<phase>/...             per-phase checkpoints and state (see Trainer)
    RUN_DIR/model.safetensors       final weights; model.json holds what rebuilds the model
    RUN_DIR/serving.safetensors     the model as served (serving.json: ids, titles, stats)
    RUN_DIR/results.json            valid + test metrics (overall, buckets, groups, coverage)

Under torchrun every process trains; rank 0 alone writes files and evaluates.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from padrec.config import fingerprint_fields, to_dict
from padrec.evaluation import evaluate
from padrec.evaluation.significance import user_confidence_intervals
from padrec.experiment.config import ExperimentConfig, load_experiment_config
from padrec.experiment.prepare import Prepared, build_method, prepare
from padrec.fingerprint import fingerprint
from padrec.io import read_json, write_json
from padrec.methods import Method, Phase
from padrec.rundir import claim, mark_complete
from padrec.serving.export import export_serving
from padrec.training.checkpoint import save_weights
from padrec.training.config import TrainConfig, phase_config
from padrec.training.distributed import Distributed, init_distributed
from padrec.training.threads import release as release_slot
from padrec.training.threads import take_slot
from padrec.training.trainer import PhaseResult, Trainer, make_score_fn, set_seed

log = logging.getLogger(__name__)


def phase_train_config(cfg: ExperimentConfig, phase: Phase) -> TrainConfig:
    """The run's training settings with the phase's own overrides, then the run's ``phase_train``."""
    tcfg = phase_config(cfg.train, phase.overrides, where=f"phase '{phase.name}' overrides")
    return phase_config(tcfg, cfg.phase_train.get(phase.name, {}), where=f"phase_train.{phase.name}")


def check_phase_names(cfg: ExperimentConfig, method: Method) -> None:
    """``phases`` and ``phase_train`` may name only the method's phases."""
    known = [p.name for p in method.phases()]
    for where, names in (("phases", cfg.phases), ("phase_train", list(cfg.phase_train))):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown phase(s) {unknown} for method '{cfg.method}'; phases: {known}")


def run_experiment(
    cfg: ExperimentConfig, prepared: Prepared | None = None, world: Distributed | None = None
) -> dict[str, Any] | None:
    """Train every phase of the method, evaluate the best-validation model, write the run dir.

    Returns the results dict also written to ``results.json`` (None on data-parallel ranks
    other than 0, which only train).
    """
    if world is None:
        world, device = init_distributed(cfg.train.device)
    else:
        device = init_distributed(cfg.train.device)[1]
    if cfg.train.num_threads > 0:
        release_slot()
        torch.set_num_threads(cfg.train.num_threads)
    else:  # share the cores with the other padrec jobs (and data-parallel processes) running here
        take_slot()
    run_dir = cfg.run_dir()
    t_start = time.perf_counter()
    prepared = prepared or prepare(cfg, world)
    set_seed(cfg.train.seed)
    method = build_method(cfg, prepared)
    check_phase_names(cfg, method)
    if world.is_main:
        changes = claim(run_dir, to_dict(cfg), lambda saved: to_dict(load_experiment_config(saved, saved=True)))
        if changes:
            shown = "; ".join(changes[:6]) + (" ..." if len(changes) > 6 else "")
            tqdm.write(
                f"note: {run_dir} held a run with other settings ({shown}); phases whose inputs "
                "changed train again, the others are reused"
            )

    split = prepared.split
    data_fp = fingerprint(
        split.train_inputs,
        split.train_targets,
        split.valid.targets,
        split.test.targets,
        prepared.text_embeddings if prepared.text_embeddings is not None else "no-text",
    )
    phase_results: list[PhaseResult] = []
    phase_fps: dict[str, str] = {}
    wanted = set(cfg.phases)
    phases = method.phases()
    names = [p.name for p in phases]
    last_wanted = max((names.index(n) for n in wanted), default=len(names) - 1)
    for phase in phases[: last_wanted + 1]:  # phases after the last one asked for are not run
        tcfg = phase_train_config(cfg, phase)
        deps = list(phase_fps) if phase.after is None else phase.after
        fp = fingerprint(
            data_fp,
            [phase_fps[d] for d in deps if d in phase_fps],
            phase.name,
            fingerprint_fields(tcfg),
            cfg.method,
            method.fingerprint_config(phase),
            fingerprint_fields(cfg.eval),
        )
        method.begin_phase(phase.name)
        phase_dir = run_dir / phase.name
        if wanted and phase.name not in wanted:
            state_path = phase_dir / "state.json"
            state = read_json(state_path) if state_path.exists() else None
            if not state or not state.get("finished") or state.get("fingerprint") != fp:
                raise RuntimeError(
                    f"phase '{phase.name}' must be finished (with the same inputs) in {run_dir} before "
                    f"running {sorted(wanted)}; run it first"
                )
        set_seed(tcfg.seed)
        res = Trainer(method, split, tcfg, cfg.eval, world, device).fit(phase.name, phase_dir, fp)
        phase_results.append(res)
        log.info(
            "phase %s: best epoch %d, valid %s=%.4f (%s)",
            phase.name,
            res.best_epoch,
            tcfg.monitor,
            res.best_value,
            res.stopped,
        )
        phase_fps[phase.name] = fp
    if not world.is_main:
        world.barrier()
        return None
    try:
        return _finish(cfg, prepared, method, phase_results, device, t_start)
    finally:
        world.barrier()


def _finish(
    cfg: ExperimentConfig,
    prepared: Prepared,
    method: Method,
    phase_results: list[PhaseResult],
    device: torch.device,
    t_start: float,
) -> dict[str, Any]:
    """Evaluate the trained method on test and valid and write the model, serving and result files."""
    run_dir = cfg.run_dir()
    method.eval()
    score = make_score_fn(method)
    split, ev = prepared.split, cfg.eval
    test_set = split.test.sample(ev.users, ev.users_seed)
    t_eval = time.perf_counter()
    test = evaluate(score, test_set, prepared.stats, ev, device=device, main_metric=cfg.train.monitor)
    test_seconds = time.perf_counter() - t_eval
    # The validation users the model was selected on (all of them unless train.valid_users).
    valid_set = split.valid.sample(cfg.train.valid_users, cfg.train.seed)
    valid = evaluate(score, valid_set, prepared.stats, ev, device=device, main_metric=cfg.train.monitor)
    model_meta = {
        "method": cfg.method,
        "method_config": cfg.method_config,
        "num_items": prepared.dataset.num_items,
        "max_len": prepared.split.config.max_len,
        "experiment": to_dict(cfg),
        "text": prepared.text_meta,
        "phase": method.phase,
    }
    save_weights(method, run_dir / "model.safetensors", model_meta, only=method.saved_state_keys())
    not_servable = method.serving_unsupported()
    if not_servable is None:
        export_serving(
            method,
            run_dir,
            {**model_meta, "history_handling": cfg.eval.history_handling},
            item_ids=[str(x) for x in prepared.dataset.item_ids],
            titles=prepared.dataset.titles(),
            stats=prepared.stats,
        )
    else:
        log.info("no serving export: %s", not_servable)
    results = {
        "name": cfg.name,
        "seed": cfg.train.seed,
        "dataset": prepared.dataset.name,
        "phases": [dataclasses.asdict(p) for p in phase_results],
        "test": test.to_dict(),
        "valid": valid.to_dict(),
        "test_users": {
            "evaluated": len(test_set),
            "of": len(split.test),
            "sample_seed": ev.users_seed if len(test_set) < len(split.test) else None,
            "ci95": {k: list(v) for k, v in user_confidence_intervals(test).items()},
        },
        "method_report": method.report(),
        "test_eval_seconds": test_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "peak_rss_mb": peak_rss_mb(),
    }
    write_json(run_dir / "results.json", results)
    mark_complete(run_dir)
    return results


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
