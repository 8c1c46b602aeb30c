"""``padrec analyze``: the PAD paper's analyses of trained runs (see docs/ANALYSIS.md).

- ``buckets``: two runs per frequency bucket and warm/median/cold (Fig. 2);
- ``discrepancy``: Kendall's tau between two embedding tables over (history, target) pairs (Fig. 6);
- ``distances``: near / far ID-distance pairs under ID and text embeddings (Fig. 3).

Each writes a PNG and a JSON file to ``--out`` and prints a table and the paths.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from padrec.commands.common import console, fail, setup_logging
from padrec.io import write_json

RAW_TEXT = "raw-text"


# --- helpers -------------------------------------------------------------------------
def _slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _run_names(a: Path, b: Path) -> tuple[str, str]:
    """Display names of two runs: their directory names, with the parent when those clash."""
    na, nb = a.resolve().name, b.resolve().name
    if na == nb and a.resolve() != b.resolve():
        na, nb = f"{a.resolve().parent.name}/{na}", f"{b.resolve().parent.name}/{nb}"
    return na, nb


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def _fmt_lift(v: float | None) -> str:
    if v is None:
        return "—"
    color = "green" if v >= 0 else "red"
    return f"[{color}]{v * 100:+.1f}%[/]"


def _load_run(run: Path) -> tuple[Any, Any, Any]:
    """``padrec.experiment.load_run`` (a seam the tests replace)."""
    from padrec.experiment import load_run

    return load_run(run)


def _model_dir(run: Path) -> Path:
    """The directory holding model.json: ``run`` itself, or the first seed of a multi-seed run."""
    if (run / "model.json").exists():
        return run
    if (run / "summary.json").exists():
        from padrec.analysis.buckets import seed_result_files

        seeds = seed_result_files(run / "summary.json")
        first = seeds[0].parent
        console.print(f"[yellow]note:[/] {run} is a multi-seed run; using its first seed {first}")
        return first
    return run


def _load_model(run: Path) -> tuple[Any, Any, Any, Path]:
    try:
        model_dir = _model_dir(run)
        method, cfg, prepared = _load_run(model_dir)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as exc:
        fail(f"cannot load run {run}: {exc}")
    return method, cfg, prepared, model_dir


def _raw_text(run: Path, cfg: Any, prepared: Any):
    """The run's raw item-text embeddings: Prepared.text_embeddings, or encoded with the run's text settings."""
    if getattr(prepared, "text_embeddings", None) is not None:
        return prepared.text_embeddings
    try:
        from padrec.config import from_dict
        from padrec.text import TextConfig, build_text_embeddings

        tcfg = from_dict(TextConfig, getattr(cfg, "text", {}) or {}, where="text")
        return build_text_embeddings(prepared.dataset, tcfg).matrix
    except Exception as exc:  # noqa: BLE001 - any failure here means "no text for this run"
        fail(f"run {run} has no text embeddings and encoding the item texts failed: {exc}")


def _table(method: Any, cfg: Any, prepared: Any, name: str, run: Path) -> tuple[Any, str]:
    """Embedding table ``name`` of a loaded run and a description of where it came from.

    Method tables (``method.item_embeddings()``) come first; ``raw-text`` is always the raw
    text embeddings, and ``text`` falls back to them when the method has no ``text`` table.
    """
    tables = method.item_embeddings() if name != RAW_TEXT else {}
    if name in tables:
        return tables[name], f"{run}: method table '{name}'"
    if name in ("text", RAW_TEXT):
        return _raw_text(run, cfg, prepared), f"{run}: raw text embeddings"
    fail(f"run {run} has no embedding table '{name}'; available: {sorted(tables) + [RAW_TEXT]}")


def _written(*paths: Path) -> None:
    for p in paths:
        console.print(f"written {p}")


# --- commands ------------------------------------------------------------------------
def register(app: typer.Typer) -> None:
    analyze_app = typer.Typer(
        help="Analyses of trained runs: per-bucket comparison (PAD Fig. 2), embedding "
        "discrepancy (Fig. 6), near/far distance distributions (Fig. 3).",
        no_args_is_help=True,
    )
    app.add_typer(analyze_app, name="analyze")

    @analyze_app.command("buckets")
    def buckets_command(
        run_a: Path = typer.Argument(
            ...,
            help="Baseline run: a run dir (results.json), a multi-seed dir "
            "(summary.json; averaged over seeds) or a results JSON file.",
        ),
        run_b: Path = typer.Argument(..., help="Challenger run, same kinds as RUN_A."),
        metric: str = typer.Option("NDCG@10", help="Metric to compare, e.g. NDCG@10 or HR@10."),
        split: str = typer.Option("test", help="Results split: test or valid."),
        name_a: str | None = typer.Option(None, help="Display name of RUN_A (default: its directory name)."),
        name_b: str | None = typer.Option(None, help="Display name of RUN_B."),
        out: Path = typer.Option(Path("analysis"), "--out", "-o", help="Output directory for PNG + JSON."),
    ) -> None:
        """Compare two runs per frequency bucket of the target and per warm/median/cold group.

        Grouped bars with B's relative lift over A annotated (PAD Fig. 2).

        Example: padrec analyze buckets runs/sasrec runs/pad --metric NDCG@10 --out analysis
        """
        from padrec.analysis import compare_buckets, load_results, plot_bucket_comparison, to_jsonable

        if split not in ("test", "valid"):
            fail(f"--split must be test or valid, got '{split}'")
        da, db = _run_names(run_a, run_b)
        names = (name_a or da, name_b or db)
        try:
            ra, rb = load_results(run_a, split), load_results(run_b, split)
            comp = compare_buckets(ra, rb, metric, names)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            fail(str(exc).strip("'\""))
        stem = out / f"buckets_{_slug(names[0])}_vs_{_slug(names[1])}_{_slug(metric)}"
        comp["split"] = split
        png = plot_bucket_comparison(comp, stem.with_suffix(".png"))
        js = write_json(stem.with_suffix(".json"), to_jsonable(comp))

        t = Table(title=f"{metric} ({split}): {names[1]} vs {names[0]}")
        for col in ("target", "users", names[0], names[1], "lift"):
            t.add_column(col, justify="left" if col == "target" else "right")
        sections = [("overall", comp["overall"])] + [(f"bucket {k}", r) for k, r in comp["by_bucket"].items()]
        sections += list(comp["by_group"].items())
        for i, (label, row) in enumerate(sections):
            t.add_row(
                label,
                _fmt(row.get("users_a")),
                _fmt(row["a"]),
                _fmt(row["b"]),
                _fmt_lift(row["lift"]),
                end_section=(i == 0 or i == len(comp["by_bucket"])),
            )
        console.print(t)
        _written(png, js)

    @analyze_app.command("discrepancy")
    def discrepancy_command(
        run_a: Path = typer.Argument(..., help="Run dir of model A (holds model.json)."),
        run_b: Path = typer.Argument(..., help="Run dir of model B (may equal RUN_A to compare two of its tables)."),
        table_a: str = typer.Option(
            "id",
            help="Table of A: a name from method.item_embeddings() (id, text, ...) "
            "or raw-text; 'text' means raw text when the method has no text table.",
        ),
        table_b: str = typer.Option("id", help="Table of B (same choices)."),
        distance: str = typer.Option("euclidean", help="euclidean or cosine."),
        max_pairs: int = typer.Option(200_000, help="Sample at most this many (history, target) pairs (0 = all)."),
        seed: int = typer.Option(0, help="Seed of the pair sample."),
        split: str = typer.Option("test", help="Pairs from the test or valid sequences."),
        keep_repeats: bool = typer.Option(
            False, "--keep-repeats", help="Keep pairs whose history item is the target itself (dropped by default)."
        ),
        name_a: str | None = typer.Option(None, help="Display name of A (default: RUN_A's directory name)."),
        name_b: str | None = typer.Option(None, help="Display name of B."),
        out: Path = typer.Option(Path("analysis"), "--out", "-o", help="Output directory for PNG + JSON."),
        verbose: bool = typer.Option(False, "-v", "--verbose", help="Log progress."),
    ) -> None:
        """Kendall's tau between two embedding tables' distances over (history, target) pairs.

        Pairs: every history item in each user's window, with that user's target (PAD Fig. 6).

        Tau overall, per frequency bucket (from RUN_A's data) of the target and of the history item.

        Example: padrec analyze discrepancy runs/sasrec runs/pad --table-a id --table-b id --distance cosine
        """
        setup_logging(verbose)
        from padrec.analysis import (
            history_target_pairs,
            kendall_discrepancy,
            plot_discrepancy,
            to_jsonable,
        )

        if distance not in ("euclidean", "cosine"):
            fail(f"--distance must be euclidean or cosine, got '{distance}'")
        if split not in ("test", "valid"):
            fail(f"--split must be test or valid, got '{split}'")
        ma, cfg_a, prep_a, dir_a = _load_model(run_a)
        if run_b.resolve() == run_a.resolve():
            mb, cfg_b, prep_b, dir_b = ma, cfg_a, prep_a, dir_a
        else:
            mb, cfg_b, prep_b, dir_b = _load_model(run_b)
        emb_a, src_a = _table(ma, cfg_a, prep_a, table_a, dir_a)
        emb_b, src_b = _table(mb, cfg_b, prep_b, table_b, dir_b)
        n_a, n_b = prep_a.dataset.num_items, prep_b.dataset.num_items
        if n_a != n_b:
            fail(f"{run_a} has {n_a} items but {run_b} has {n_b}: compare runs on the same dataset")
        da, db = _run_names(run_a, run_b)
        names = (name_a or f"{da}:{table_a}", name_b or f"{db}:{table_b}")
        pairs = history_target_pairs(getattr(prep_a.split, split), max_pairs or None, seed, not keep_repeats)
        if len(pairs) < 2:
            fail(f"{run_a}: fewer than 2 (history, target) pairs in the {split} set")
        try:
            res = kendall_discrepancy(
                emb_a, emb_b, pairs, prep_a.stats.bucket, distance, groups=prep_a.stats.group, names=names
            )
        except ValueError as exc:
            fail(str(exc))
        res.update(
            {
                "runs": [str(run_a), str(run_b)],
                "tables": [table_a, table_b],
                "table_sources": [src_a, src_b],
                "split": split,
                "max_pairs": max_pairs,
                "seed": seed,
                "drop_repeats": not keep_repeats,
            }
        )
        stem = out / f"discrepancy_{_slug(names[0])}_vs_{_slug(names[1])}_{distance}"
        png = plot_discrepancy(res, stem.with_suffix(".png"))
        js = write_json(stem.with_suffix(".json"), to_jsonable(res))

        t = Table(title=f"Kendall's τ of {distance} distances: {names[0]} vs {names[1]}")
        for col in ("bucket / group", "pairs (target)", "τ (target)", "pairs (history)", "τ (history)"):
            t.add_column(col, justify="left" if col.startswith("bucket") else "right")
        ov = res["overall"]
        t.add_row("overall", _fmt(ov["pairs"]), _fmt(ov["tau"], 3), "", "", end_section=True)
        keys = list(res["by_target_bucket"])
        for i, k in enumerate(keys):
            rt, rh = res["by_target_bucket"][k], res["by_history_bucket"].get(k, {})
            t.add_row(
                f"bucket {k}",
                _fmt(rt["pairs"]),
                _fmt(rt["tau"], 3),
                _fmt(rh.get("pairs")),
                _fmt(rh.get("tau"), 3),
                end_section=(i == len(keys) - 1),
            )
        for g, rt in res["by_target_group"].items():
            rh = res["by_history_group"].get(g, {})
            t.add_row(g, _fmt(rt["pairs"]), _fmt(rt["tau"], 3), _fmt(rh.get("pairs")), _fmt(rh.get("tau"), 3))
        console.print(t)
        console.print(f"A = {src_a}\nB = {src_b}")
        _written(png, js)

    @analyze_app.command("distances")
    def distances_command(
        run: Path = typer.Argument(..., help="Run dir (holds model.json)."),
        id_table: str = typer.Option("id", help="Reference table from method.item_embeddings()."),
        text_table: str = typer.Option(
            RAW_TEXT, help="Table compared with it: raw-text (the run's item-text embeddings) or a method table name."
        ),
        pairs: int = typer.Option(100_000, "--pairs", "-m", help="Number of item pairs M."),
        pair_source: str = typer.Option(
            "random",
            help="random: M distinct random item pairs; cooccur: M (history, target) pairs of the test sequences.",
        ),
        fraction: float = typer.Option(0.1, help="Share of pairs in the near and in the far group."),
        distance: str = typer.Option("euclidean", help="euclidean or cosine."),
        seed: int = typer.Option(0, help="Seed of the pair sample."),
        out: Path = typer.Option(Path("analysis"), "--out", "-o", help="Output directory for PNG + JSON."),
        verbose: bool = typer.Option(False, "-v", "--verbose", help="Log progress."),
    ) -> None:
        """Distances of the nearest / farthest 10% of item pairs by ID distance, in ID and text space.

        Each space's distances are divided by its mean distance over the pairs (PAD Fig. 3).

        Reports summary statistics, histogram overlap and separation AUC per space.

        Example: padrec analyze distances runs/sasrec --pairs 100000 --out analysis
        """
        setup_logging(verbose)
        from padrec.analysis import (
            distance_distributions,
            history_target_pairs,
            plot_distance_distributions,
            sample_item_pairs,
            to_jsonable,
        )

        if distance not in ("euclidean", "cosine"):
            fail(f"--distance must be euclidean or cosine, got '{distance}'")
        if pair_source not in ("random", "cooccur"):
            fail(f"--pair-source must be random or cooccur, got '{pair_source}'")
        if pairs < 20:
            fail(f"--pairs must be at least 20, got {pairs}")
        method, cfg, prepared, model_dir = _load_model(run)
        id_emb, src_id = _table(method, cfg, prepared, id_table, model_dir)
        text_emb, src_text = _table(method, cfg, prepared, text_table, model_dir)
        if pair_source == "random":
            item_pairs = sample_item_pairs(prepared.dataset.num_items, pairs, seed)
        else:
            item_pairs = history_target_pairs(prepared.split.test, pairs, seed)
        spaces = {id_table: id_emb, "text" if text_table == RAW_TEXT else text_table: text_emb}
        if len(spaces) < 2:
            fail(f"--id-table and --text-table name the same table '{id_table}'")
        try:
            res, samples = distance_distributions(
                spaces, item_pairs, reference=id_table, fraction=fraction, distance=distance, return_samples=True
            )
        except ValueError as exc:
            fail(str(exc))
        res.update(
            {
                "run": str(run),
                "pair_source": pair_source,
                "seed": seed,
                "table_sources": {id_table: src_id, list(spaces)[1]: src_text},
            }
        )
        stem = out / f"distances_{_slug(run.resolve().name)}_{_slug(id_table)}_vs_{_slug(list(spaces)[1])}_{distance}"
        png = plot_distance_distributions(res, samples, stem.with_suffix(".png"))
        js = write_json(stem.with_suffix(".json"), to_jsonable(res))

        t = Table(
            title=f"{res['num_pairs']:,} {pair_source} pairs; nearest / farthest {fraction:.0%} by "
            f"{id_table} distance ({distance}, ÷ mean distance)"
        )
        for col in ("space", "group", "mean", "median", "q05", "q95", "overlap", "AUC", "τ vs ref"):
            t.add_column(col, justify="left" if col in ("space", "group") else "right")
        for space in res["spaces"]:
            ovl = res["overlap"][space]
            for j, grp in enumerate(("near", "far")):
                st = res["stats"][space][grp]
                t.add_row(
                    space if j == 0 else "",
                    grp,
                    _fmt(st["mean"], 3),
                    _fmt(st["median"], 3),
                    _fmt(st["q05"], 3),
                    _fmt(st["q95"], 3),
                    _fmt(ovl["overlap"], 3) if j == 0 else "",
                    _fmt(ovl["auc"], 3) if j == 0 else "",
                    _fmt(res["rank_correlation"][space], 3) if j == 0 else "",
                    end_section=(j == 1),
                )
        console.print(t)
        _written(png, js)
