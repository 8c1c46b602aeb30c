"""Run an experiment end to end: data -> split -> (text) -> method phases -> test metrics.

``ExperimentConfig`` is the one typed config a YAML file or the CLI fills in. ``run_experiment``
writes a self-describing run directory::

    RUN_DIR/config.json             resolved experiment config
    RUN_DIR/<phase>/...             per-phase checkpoints and state (see Trainer)
    RUN_DIR/model.safetensors       final weights; model.json holds what rebuilds the model
    RUN_DIR/results.json            valid + test metrics (overall, buckets, groups, coverage)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from padrec.config import from_dict, to_dict
from padrec.data import SplitConfig, compute_item_stats, make_split
from padrec.data.loading import DataConfig, load_dataset
from padrec.data.stats import ItemStats
from padrec.evaluation import EvalConfig, EvalResult, evaluate
from padrec.methods import METHODS, Method, MethodContext, Phase
from padrec.training.checkpoint import read_json, save_weights, write_json
from padrec.training.trainer import (
    PhaseResult,
    TrainConfig,
    Trainer,
    fingerprint,
    make_score_fn,
    phase_config,
    resolve_device,
    set_seed,
)

log = logging.getLogger(__name__)


@dataclass
class StatsConfig:
    """Item groups used by evaluation and frequency-aware methods.

    Attributes:
        num_buckets: B, equal-mass frequency buckets (bucket 1 warmest).
        head_fraction: share of most popular items counted as head.
        head_basis: count popularity over ``train`` parts or ``full`` sequences (FAERec).
    """

    num_buckets: int = 10
    head_fraction: float = 0.2
    head_basis: str = "train"


@dataclass
class ExperimentConfig:
    """Everything one run needs. Unknown keys anywhere are an error.

    Attributes:
        name: run name (used for the default output directory).
        output_dir: where the run directory goes (default ``runs/<name>``).
        data, split, stats, train, eval: see their classes.
        method: registered method name (``sequential``, ``pad``, ...).
        method_config: the method's own fields (checked against its config class).
        text: text-embedding settings for methods that use item text (see padrec.text).
        phase_train: per-phase training overrides, e.g. ``{"align": {"lr": 1e-4}}``.
        phases: run only these phases (earlier ones must be finished in the run dir; later ones
            are not run, and the model is evaluated as the last phase run left it).
    """

    name: str = "sasrec"
    output_dir: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    method: str = "sequential"
    method_config: dict[str, Any] = field(default_factory=dict)
    text: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    phase_train: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)

    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


def load_experiment_config(data: dict[str, Any]) -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig` (the method config included)."""
    cfg = from_dict(ExperimentConfig, data)
    cls = METHODS.get(cfg.method)
    from_dict(cls.config_class, cfg.method_config, where="method_config")
    return cfg


@dataclass
class Prepared:
    """Data side of an experiment, built once and shared by seeds."""

    dataset: Any
    stats: ItemStats
    split: Any
    text_embeddings: torch.Tensor | None
    text_meta: dict[str, Any]


def prepare(cfg: ExperimentConfig) -> Prepared:
    """Load the dataset, compute item statistics and split; encode text if the method needs it."""
    dataset = load_dataset(cfg.data)
    split = make_split(dataset, cfg.split)
    stats = compute_item_stats(dataset, cfg.stats.num_buckets, cfg.stats.head_fraction, cfg.stats.head_basis)
    text, meta = None, {}
    if getattr(METHODS.get(cfg.method), "needs_text", False):
        from padrec.text import TextConfig, build_text_embeddings

        tcfg = from_dict(TextConfig, cfg.text, where="text")
        emb = build_text_embeddings(dataset, tcfg, progress=cfg.train.progress)
        text = emb.matrix
        meta = {
            "encoder": emb.encoder,
            "identity": getattr(emb, "identity", None),
            "template": emb.template,
            "dim": int(text.shape[1]),
            "cache_path": str(emb.cache_path) if emb.cache_path else None,
        }
    return Prepared(dataset, stats, split, text, meta)


def build_method(cfg: ExperimentConfig, prepared: Prepared) -> Method:
    """Instantiate the configured method for the prepared data."""
    ctx = MethodContext(
        num_items=prepared.dataset.num_items,
        max_len=prepared.split.config.max_len,
        item_stats=prepared.stats,
        text_embeddings=prepared.text_embeddings,
    )
    return METHODS.build(cfg.method, cfg.method_config, context=ctx)


def phase_method_config(method_config: dict[str, Any], phase: Phase) -> dict[str, Any]:
    """The method-config fields that enter ``phase``'s fingerprint: ``phase.config_keys``
    (all when None), less any of ``phase.added_keys`` at its old-behaviour value."""
    keys = method_config if phase.config_keys is None else phase.config_keys
    return {k: method_config[k] for k in keys if k not in phase.added_keys or method_config[k] != phase.added_keys[k]}


def run_experiment(cfg: ExperimentConfig, prepared: Prepared | None = None) -> dict[str, Any]:
    """Train every phase of the method, evaluate the best-validation model, write the run dir.

    Returns the results dict also written to ``results.json``.
    """
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", to_dict(cfg))
    t_start = time.perf_counter()
    prepared = prepared or prepare(cfg)
    set_seed(cfg.train.seed)
    method = build_method(cfg, prepared)
    device = resolve_device(cfg.train.device)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)

    data_fp = fingerprint(
        prepared.split.train_inputs,
        prepared.split.train_targets,
        prepared.split.valid.targets,
        prepared.split.test.targets,
        prepared.text_embeddings if prepared.text_embeddings is not None else "no-text",
    )
    phase_results: list[PhaseResult] = []
    phase_fps: dict[str, str] = {}
    wanted = set(cfg.phases)
    known = [p.name for p in method.phases()]
    unknown = wanted - set(known)
    if unknown:
        raise ValueError(f"unknown phase(s) {sorted(unknown)} for method '{cfg.method}'; phases: {known}")
    last_wanted = max((known.index(n) for n in wanted), default=len(known) - 1)
    for phase in method.phases()[: last_wanted + 1]:  # phases after the last one asked for are not run
        tcfg = phase_config(phase_config(cfg.train, phase.overrides), cfg.phase_train.get(phase.name, {}))
        mcfg = phase_method_config(to_dict(method.config), phase)
        deps = list(phase_fps) if phase.after is None else phase.after
        # Settings that cannot change the weights do not invalidate a finished phase.
        run_settings = to_dict(tcfg) | {"progress": None, "device": None, "num_threads": None}
        run_settings.pop("trim_memory_every")
        fp = fingerprint(
            data_fp,
            [phase_fps[d] for d in deps if d in phase_fps],
            phase.name,
            run_settings,
            cfg.method,
            mcfg,
            to_dict(cfg.eval),
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
        trainer = Trainer(method, prepared.split, tcfg, cfg.eval)
        res = trainer.fit(phase.name, phase_dir, fp)
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

    method.eval()
    score = make_score_fn(method)
    t_eval = time.perf_counter()
    test = evaluate(score, prepared.split.test, prepared.stats, cfg.eval, device=device)
    test_seconds = time.perf_counter() - t_eval
    valid = evaluate(score, prepared.split.valid, prepared.stats, cfg.eval, device=device)
    model_meta = {
        "method": cfg.method,
        "method_config": cfg.method_config,
        "num_items": prepared.dataset.num_items,
        "max_len": prepared.split.config.max_len,
        "experiment": to_dict(cfg),
        "text": prepared.text_meta,
        "phase": method.phase,
    }
    save_weights(method, run_dir / "model.safetensors", model_meta)
    from padrec.serving import export_serving

    export_serving(method, run_dir, {**model_meta, "item_stats": stats_to_json(prepared.stats)})
    results = {
        "name": cfg.name,
        "seed": cfg.train.seed,
        "dataset": prepared.dataset.name,
        "phases": [dataclasses.asdict(p) for p in phase_results],
        "test": test.to_dict(),
        "valid": valid.to_dict(),
        "method_report": method.report(),
        "test_eval_seconds": test_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "peak_rss_mb": peak_rss_mb(),
    }
    write_json(run_dir / "results.json", results)
    return results


def stats_to_json(stats: ItemStats) -> dict[str, Any]:
    """ItemStats as JSON-friendly lists (rebuilt by the serving loader)."""
    return {
        f.name: (
            getattr(stats, f.name).tolist() if hasattr(getattr(stats, f.name), "tolist") else getattr(stats, f.name)
        )
        for f in dataclasses.fields(stats)
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux ru_maxrss is KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[Method, ExperimentConfig, Prepared]:
    """Rebuild a trained method from ``run_dir`` (model.json + model.safetensors)."""
    from padrec.training.checkpoint import load_weights

    run_dir = Path(run_dir)
    meta_path = run_dir / "model.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{run_dir}: no model.json (is this a finished padrec run directory?)")
    meta = read_json(meta_path)
    cfg = load_experiment_config(meta["experiment"])
    prepared = prepare(cfg)
    method = build_method(cfg, prepared).to(resolve_device(device))
    # Score as the run ended: in the phase it finished (the last one, unless --phase stopped early).
    method.begin_phase(final_phase(method, meta))
    load_weights(method, run_dir / "model.safetensors")
    method.eval()
    return method, cfg, prepared


def final_phase(method: Method, meta: dict[str, Any]) -> str:
    """The phase a saved run ended in (``meta["phase"]``; older runs: the method's last phase)."""
    names = [p.name for p in method.phases()]
    phase = meta.get("phase") or names[-1]
    if phase not in names:
        raise ValueError(f"saved run ended in phase {phase!r}, which method '{meta.get('method')}' does not have")
    return phase


def evaluate_run(
    method: Method, prepared: Prepared, cfg: EvalConfig, which: str = "test", device: str = "cpu"
) -> EvalResult:
    """Evaluate a loaded method on the prepared split's ``valid`` or ``test`` set."""
    eval_set = getattr(prepared.split, which)
    return evaluate(make_score_fn(method), eval_set, prepared.stats, cfg, device=resolve_device(device))
