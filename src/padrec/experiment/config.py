"""The experiment config: one typed, strict config a YAML file or the CLI fills in.

:func:`load_experiment_config` checks everything at load time, before any data is read or
any file written: every section's keys and values, the method's own config (resolved with
its defaults, so run directories record what ran), cross-section constraints (the monitored
metric's K among ``eval.ks``; training examples the method's backbones can learn from),
and each ``phase_train`` entry's fields.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from padrec.config import ConfigError, from_dict, to_dict
from padrec.data import SplitConfig
from padrec.data.loading import DataConfig
from padrec.evaluation import EvalConfig
from padrec.methods import METHODS
from padrec.training.config import TrainConfig, phase_config


@dataclass
class StatsConfig:
    """Item groups used by evaluation and frequency-aware methods.

    Attributes:
        num_buckets: B, equal-mass frequency buckets (bucket 1 warmest).
        head_fraction: share of most popular items counted as head, in (0, 1).
        head_basis: count popularity over ``train`` parts or ``full`` sequences (FAERec).
    """

    num_buckets: int = 10
    head_fraction: float = 0.2
    head_basis: Literal["train", "full"] = "train"

    def __post_init__(self) -> None:
        if self.num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {self.num_buckets}")
        if not 0 < self.head_fraction < 1:
            raise ValueError(f"head_fraction must be in (0, 1), got {self.head_fraction}")


@dataclass
class ExperimentConfig:
    """Everything one run needs. Unknown keys anywhere are an error.

    Attributes:
        name: run name (used for the default output directory); empty = named after the method
            and backbone (``sasrec``, ``gru4rec``, ``text_sasrec`` for MoRec, ``pad``,
            ``pad_caser``, ...).
        output_dir: where the run directory goes (default ``runs/<name>``).
        data, split, stats, train, eval: see their classes.
        method: registered method name (``sequential``, ``pad``, ...).
        method_config: the method's own fields (checked against its config class; after
            :func:`load_experiment_config`, every field with its resolved value).
        text: text-embedding settings for methods that use item text (see padrec.text).
        phase_train: per-phase training overrides, e.g. ``{"align": {"lr": 1e-4}}``.
        phases: run only these phases (earlier ones must be finished in the run dir; later ones
            are not run, and the model is evaluated as the last phase run left it).
    """

    name: str = ""
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

    def method_settings(self) -> Any:
        """The method's config dataclass (built from ``method_config``)."""
        return from_dict(METHODS.get(self.method).config_class, self.method_config, where="method_config")


def upgrade_saved_config(data: dict[str, Any]) -> dict[str, Any]:
    """A config saved by an earlier padrec (a run directory's ``config.json`` / ``model.json``)
    in today's form: ``eval.main_metric`` (merged into ``train.monitor``) is dropped."""
    data = copy.deepcopy(data)
    data.get("eval", {}).pop("main_metric", None)
    return data


def load_experiment_config(data: dict[str, Any], saved: bool = False) -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig` (see the module docstring).

    ``saved``: ``data`` comes from a run directory, possibly written by an earlier padrec
    (see :func:`upgrade_saved_config`).
    """
    if saved:
        data = upgrade_saved_config(data)
    elif isinstance(data.get("eval"), dict) and "main_metric" in data["eval"]:
        raise ConfigError("eval.main_metric: the monitored metric is set once, as train.monitor")
    cfg = from_dict(ExperimentConfig, data)
    try:
        cls = METHODS.get(cfg.method)
    except KeyError as exc:
        raise ConfigError(f"method: {exc.args[0]}") from None
    method_cfg = from_dict(cls.config_class, cfg.method_config, where="method_config")
    cfg.method_config = to_dict(method_cfg)
    if not cfg.name:
        cfg.name = default_run_name(cfg.method, cfg.method_config)
    _check_monitor(cfg)
    _resolve_train_examples(cfg, cls.causal(method_cfg))
    if cls.needs_text(method_cfg):
        from padrec.text import TextConfig

        cfg.text = to_dict(from_dict(TextConfig, cfg.text, where="text"))
    for phase, overrides in cfg.phase_train.items():
        phase_config(cfg.train, overrides, where=f"phase_train.{phase}")
    return cfg


def default_run_name(method: str, method_config: dict[str, Any]) -> str:
    """A run name from the method and its backbone: the backbone alone for the plain ID
    model (``gru4rec``), ``<items>_<backbone>`` for other item representations of it, the
    method for PAD on its default SASRec (``pad``), ``<method>_<backbone>`` otherwise."""
    backbone = method_config.get("backbone")
    if method == "sequential":
        items = method_config.get("items", "id")
        return backbone if items == "id" else f"{items}_{backbone}"
    if backbone is None or backbone == "sasrec":
        return method
    return f"{method}_{backbone}"


def _check_monitor(cfg: ExperimentConfig) -> None:
    from padrec.evaluation.ranking import check_metric_name

    try:
        check_metric_name(cfg.train.monitor, cfg.eval.ks)
    except ValueError as exc:
        raise ConfigError(f"train.monitor: {exc}") from None


def _resolve_train_examples(cfg: ExperimentConfig, causal: bool) -> None:
    """``split.train_examples: auto`` -> ``shifted`` for causal methods, ``prefixes`` otherwise."""
    if cfg.split.train_examples == "auto":
        cfg.split.train_examples = "shifted" if causal else "prefixes"
    elif cfg.split.train_examples == "shifted" and not causal and not cfg.split.allow_look_ahead:
        raise ConfigError(
            f"split.train_examples: 'shifted' trains every position at once, which a non-causal backbone "
            f"(method_config.backbone = {cfg.method_config.get('backbone')!r}) would learn by looking ahead; "
            "use 'prefixes' or 'auto' (or split.allow_look_ahead: true to reproduce a release that trains so)"
        )
    elif cfg.split.train_examples == "shifted" and not causal:
        logging.getLogger("padrec").warning(
            "split.allow_look_ahead: the non-causal backbone %r trains on shifted windows and sees the "
            "items it predicts (a release's protocol, not a sound model)",
            cfg.method_config.get("backbone"),
        )
