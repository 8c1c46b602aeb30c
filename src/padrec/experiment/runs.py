"""Finished run directories: rebuild the trained method and evaluate it again."""

from __future__ import annotations

from pathlib import Path

from padrec.evaluation import EvalConfig, EvalResult, evaluate
from padrec.experiment.config import ExperimentConfig, load_experiment_config
from padrec.experiment.prepare import Prepared, build_method, prepare
from padrec.io import FileFormatError, read_json
from padrec.methods import Method, saved_phase
from padrec.rundir import check_complete
from padrec.training.checkpoint import load_weights
from padrec.training.trainer import make_score_fn, resolve_device


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[Method, ExperimentConfig, Prepared]:
    """Rebuild a trained method from ``run_dir`` (model.json + model.safetensors), in the phase
    the run ended in; run directories of earlier padrec versions load too."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "model.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{run_dir}: no model.json (is this a finished padrec run directory?)")
    check_complete(run_dir)
    meta = read_json(meta_path, expect=dict)
    cfg = load_experiment_config(meta["experiment"], saved=True)
    prepared = prepare(cfg)
    method = build_method(cfg, prepared).to(resolve_device(device))
    method.set_phase(saved_phase(method, meta.get("phase"), str(meta_path)))
    try:
        load_weights(method, run_dir / "model.safetensors", partial=method.saved_state_keys() is not None)
    except FileFormatError as exc:
        if "does not match" not in exc.problem:
            raise
        raise FileFormatError(
            exc.path, f"{exc.problem}; the weights do not fit the model model.json describes (was model.json edited?)"
        ) from None
    method.eval()
    return method, cfg, prepared


def evaluate_run(
    method: Method,
    prepared: Prepared,
    cfg: EvalConfig,
    which: str = "test",
    device: str = "cpu",
    main_metric: str = "NDCG@10",
) -> EvalResult:
    """Evaluate a loaded method on the prepared split's ``valid`` or ``test`` set (the test set
    on ``cfg.users`` sampled users when set, as the run was tested)."""
    if which not in ("valid", "test"):
        raise ValueError(f"which must be 'valid' or 'test', got {which!r}")
    eval_set = prepared.split.valid if which == "valid" else prepared.split.test.sample(cfg.users, cfg.users_seed)
    return evaluate(
        make_score_fn(method), eval_set, prepared.stats, cfg, device=resolve_device(device), main_metric=main_metric
    )
