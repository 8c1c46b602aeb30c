"""``padrec train``: train a method (default SASRec on the embedded Prime Pantry) and print metrics."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import typer

from padrec.commands.common import console, parse_ints, parse_set, setup_logging


def build_config_dict(
    config: Optional[Path],
    overrides: dict[str, Any],
    sets: list[str],
) -> dict[str, Any]:
    """Defaults <- YAML file <- CLI flags <- ``--set key=value`` (later wins)."""
    from padrec.config import load_yaml, set_dotted

    data: dict[str, Any] = load_yaml(config) if config else {}
    for key, value in overrides.items():
        if value is not None:
            set_dotted(data, key, value)
    for key, value in parse_set(sets):
        set_dotted(data, key, value)
    return data


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML experiment config."),
        data: Optional[str] = typer.Option(
            None, "--data", "-d", help="Dataset name or path (default: the embedded Prime Pantry)."
        ),
        method: Optional[str] = typer.Option(None, help="Method name (sequential, pad, ...)."),
        backbone: Optional[str] = typer.Option(None, help="Backbone name (sasrec, gru4rec, caser)."),
        loss: Optional[str] = typer.Option(None, help="Ranking loss for ID models: ce, bce or sampled_ce."),
        hidden_size: Optional[int] = typer.Option(None, help="Hidden size d."),
        protocol: Optional[str] = typer.Option(None, help="Split protocol: pad or faerec."),
        max_len: Optional[int] = typer.Option(None, help="History window."),
        epochs: Optional[int] = typer.Option(None, help="Maximum epochs per phase."),
        batch_size: Optional[int] = typer.Option(None, help="Training batch size."),
        lr: Optional[float] = typer.Option(None, help="Learning rate."),
        patience: Optional[int] = typer.Option(None, help="Early-stopping patience (validations)."),
        seed: Optional[int] = typer.Option(None, help="Random seed."),
        seeds: Optional[str] = typer.Option(None, help="Several seeds, e.g. 1,2,3: runs each, reports mean ± std."),
        device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N or auto."),
        threads: Optional[int] = typer.Option(
            None, help="Torch CPU threads (0 = a fair share of the cores among the padrec jobs running here)."
        ),
        phase: list[str] = typer.Option(
            [],
            "--phase",
            help="Run only this phase (repeatable); earlier phases must be finished in the output directory.",
        ),
        output: Optional[str] = typer.Option(None, "--output", "-o", help="Run directory (default runs/<name>)."),
        name: Optional[str] = typer.Option(None, help="Run name."),
        set_: list[str] = typer.Option(
            [], "--set", help="Override any config key: --set train.lr=0.001 (repeatable; dotted keys)."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        verbose: bool = typer.Option(False, "-v", "--verbose", help="Log progress."),
    ) -> None:
        """Train a method, restore the best-validation model, print and save test metrics.

        With no arguments: SASRec on the embedded Prime Pantry (PAD protocol). Without --name a
        run is named after its method and backbone (runs/sasrec, runs/gru4rec, runs/pad, ...).

        Examples:
          padrec train
          padrec train --backbone gru4rec --seeds 1,2,3
          padrec train -c configs/pad.yaml --phase disentangle
        """
        setup_logging(verbose)

        overrides: dict[str, Any] = {
            "method": method,
            "method_config.backbone": backbone,
            "method_config.loss": loss,
            "method_config.hidden_size": hidden_size,
            "split.protocol": protocol,
            "split.max_len": max_len,
            "train.epochs": epochs,
            "train.batch_size": batch_size,
            "train.lr": lr,
            "train.patience": patience,
            "train.seed": seed,
            "train.device": device,
            "train.num_threads": threads,
            "output_dir": output,
            "name": name,
            "train.progress": progress,
        }
        if phase:
            overrides["phases"] = list(phase)
        raw = build_config_dict(config, overrides, set_)
        if (method or backbone) and not name:  # the config file's name would mislabel the run
            raw["name"] = ""
        if data:
            from padrec.config import to_dict
            from padrec.data.loading import resolve_dataset

            raw["data"] = {**raw.get("data", {}), **to_dict(resolve_dataset(data))}
        run_training(raw, parse_ints(seeds, "--seeds"))


def run_training(raw: dict[str, Any], seeds: list[int]) -> list[dict[str, Any]]:
    """Run the experiment once, or once per seed with an aggregate table and summary.json."""
    from padrec.evaluation import EvalResult, print_result
    from padrec.experiment import load_experiment_config, prepare, run_experiment
    from padrec.training.distributed import init_distributed, shutdown

    cfg = load_experiment_config(raw)
    world, _ = init_distributed(cfg.train.device)
    try:
        prepared = prepare(cfg, world)
        if not seeds:
            res = run_experiment(cfg, prepared, world)
            if res is None:  # a data-parallel process other than rank 0: it trained, rank 0 reports
                return []
            _print_run(res, cfg)
            print_result(EvalResult.from_dict(res["test"]), console, title=f"{cfg.name} — test")
            _print_sample_note(res, cfg.train.monitor)
            console.print(f"run directory: {cfg.run_dir()}")
            return [res]
        return _run_seeds(raw, cfg, seeds, prepared, world)
    finally:
        shutdown(world)


def _print_sample_note(res: dict[str, Any], monitor: str) -> None:
    """Say so when the test ran on a sample of users, with the monitored metric's 95% CI."""
    users = res.get("test_users") or {}
    if users.get("evaluated", 0) >= users.get("of", 0):
        return
    metric = monitor.rpartition("/")[2]
    lo, hi = users["ci95"].get(metric, (float("nan"), float("nan")))
    console.print(
        f"tested on a fixed sample of {users['evaluated']:,} of {users['of']:,} users (eval.users_seed "
        f"{users['sample_seed']}); 95% CI of {metric} over users: [{lo:.4f}, {hi:.4f}]"
    )


def _run_seeds(raw: dict[str, Any], cfg, seeds: list[int], prepared, world) -> list[dict[str, Any]]:
    """One run per seed under ``<run dir>/seed_S``, then the aggregate table and summary.json."""
    from padrec.experiment import load_experiment_config, run_experiment

    base_dir = cfg.run_dir()
    results = []
    for s in seeds:
        raw_s = copy.deepcopy(raw)
        raw_s.setdefault("train", {})["seed"] = s
        raw_s["output_dir"] = str(base_dir / f"seed_{s}")
        cfg_s = load_experiment_config(raw_s)
        res = run_experiment(cfg_s, prepared, world)
        if res is None:
            continue
        _print_run(res, cfg_s)
        results.append(res)
    if not world.is_main:
        return []
    _summarise_seeds(results, base_dir, cfg.name)
    return results


def _print_run(res: dict[str, Any], cfg) -> None:
    for p in res["phases"]:
        console.print(
            f"[bold]{cfg.name}[/] seed {res['seed']} phase {p['phase']}: best epoch {p['best_epoch']} of "
            f"{p['epochs_run']} ({p['stopped']}), valid {cfg.train.monitor}={p['best_value']:.4f}, "
            f"{p['seconds_per_epoch']:.2f} s/epoch"
        )


def _summarise_seeds(results: list[dict[str, Any]], base_dir: Path, name: str) -> None:
    from padrec.evaluation import aggregate, print_runs
    from padrec.io import write_json

    per_seed = [r["test"]["overall"] for r in results]
    agg = aggregate(per_seed)
    groups = {}
    for g in ("warm", "median", "cold"):
        rows = [r["test"]["by_group"][g] for r in results if g in r["test"].get("by_group", {})]
        if rows:
            groups[g] = aggregate(
                [{k: float("nan") if v is None else v for k, v in row.items() if k != "users"} for row in rows]
            )
    summary = {
        "name": name,
        "seeds": [r["seed"] for r in results],
        "per_seed": per_seed,
        "aggregate": agg,
        "by_group": groups,
        "runs": [str(base_dir / f"seed_{r['seed']}") for r in results],
        "seconds_per_epoch": [[p["seconds_per_epoch"] for p in r["phases"]] for r in results],
        "total_seconds": [r["total_seconds"] for r in results],
    }
    write_json(base_dir / "summary.json", summary)
    rows: dict[str, Any] = {"overall": per_seed}
    for g in ("warm", "median", "cold"):
        rows[g] = [
            {k: float("nan") if v is None else v for k, v in r["test"]["by_group"][g].items()}
            for r in results
            if g in r["test"].get("by_group", {})
        ]
    print_runs(rows, console=console, title=f"{name} — test, mean ± std over seeds {summary['seeds']}")
    console.print(f"summary: {base_dir / 'summary.json'}")
