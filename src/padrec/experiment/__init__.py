"""Experiments: the typed config, the data side, the run loop and finished run directories."""

from padrec.experiment.config import ExperimentConfig, StatsConfig, load_experiment_config, upgrade_saved_config
from padrec.experiment.prepare import Prepared, build_method, prepare
from padrec.experiment.run import peak_rss_mb, phase_train_config, run_experiment
from padrec.experiment.runs import evaluate_run, load_run

__all__ = [
    "ExperimentConfig",
    "Prepared",
    "StatsConfig",
    "build_method",
    "evaluate_run",
    "load_experiment_config",
    "load_run",
    "peak_rss_mb",
    "phase_train_config",
    "prepare",
    "run_experiment",
    "upgrade_saved_config",
]
