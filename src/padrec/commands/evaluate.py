"""``padrec evaluate`` (a saved model on a dataset) and ``padrec compare`` (paired t-test)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from padrec.commands.common import check_output_file, console, fail, parse_ints, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_command(
        run_dir: Path = typer.Argument(..., help="A finished run directory (holds model.json)."),
        which: str = typer.Option("test", "--split", help="Evaluate on 'test' or 'valid'."),
        history: Optional[str] = typer.Option(
            None, help="History handling: remove, zero or none (default: as trained)."
        ),
        ks: Optional[str] = typer.Option(None, help="Cut-offs, e.g. 5,10,20."),
        users: Optional[int] = typer.Option(
            None, help="Test a fixed sample of this many users (0 = all; default: as the run was tested)."
        ),
        device: str = typer.Option("cpu", help="cpu, cuda or auto."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the result JSON here."),
        verbose: bool = typer.Option(False, "-v", "--verbose"),
    ) -> None:
        """Full-ranking evaluation of a saved model: overall, buckets, groups, head/tail, coverage.

        Example: padrec evaluate runs/sasrec --history none --ks 10,20
        """
        setup_logging(verbose)
        from padrec.config import ConfigError, from_dict, to_dict
        from padrec.evaluation import EvalConfig, print_result
        from padrec.evaluation.metrics import parse_metric
        from padrec.experiment import evaluate_run, load_run

        if which not in ("test", "valid"):
            fail(f"--split must be test or valid, got '{which}'")
        if output is not None:
            check_output_file(output, "--output")
        method, cfg, prepared = load_run(run_dir, device=device)
        changes: dict = {}
        if history:
            changes["history_handling"] = history
        if ks:
            changes["ks"] = parse_ints(ks, "--ks")
        if users is not None:
            changes["users"] = users
        try:
            ecfg = from_dict(EvalConfig, {**to_dict(cfg.eval), **changes}, where="eval")
        except ConfigError as exc:
            flag = "--history" if "history_handling" in str(exc) else "--users" if "users" in str(exc) else "--ks"
            fail(f"{flag}: {str(exc).split(': ', 1)[-1]}")
        n = prepared.dataset.num_items
        if max(ecfg.ks) > n:
            fail(f"--ks: every cut-off must be at most the catalogue size {n}, got {max(ecfg.ks)}")
        monitor = cfg.train.monitor
        main = monitor if parse_metric(monitor.rpartition("/")[2])[1] in ecfg.ks else f"NDCG@{ecfg.ks[0]}"
        result = evaluate_run(method, prepared, ecfg, which=which, device=device, main_metric=main)
        print_result(result, console, title=f"{run_dir} — {which}")
        if output:
            result.to_json(output)
            console.print(f"written {output}")

    @app.command("compare")
    def compare_command(
        run_a: Path = typer.Argument(..., help="Baseline: a multi-seed run dir (summary.json) or a run dir."),
        run_b: Path = typer.Argument(..., help="Challenger, same kind as RUN_A."),
        metric: str = typer.Option("NDCG@10", help="Metric to test over users (single runs)."),
    ) -> None:
        """Paired t-test of RUN_B against RUN_A: over seeds (multi-seed runs) or over users (single runs).

        Example: padrec compare runs/sasrec runs/pad --metric NDCG@10
        """
        from padrec.evaluation import EvalResult, per_user_paired_test, print_comparison
        from padrec.io import read_json

        def load(p: Path):
            if (p / "summary.json").exists():
                return "seeds", read_json(p / "summary.json", expect=dict)
            if (p / "results.json").exists():
                return "single", read_json(p / "results.json", expect=dict)
            fail(f"{p}: neither summary.json nor results.json found (not a finished run directory)")

        kind_a, a = load(run_a)
        kind_b, b = load(run_b)
        if kind_a != kind_b:
            fail("compare two multi-seed runs or two single runs, not one of each")
        if kind_a == "seeds":
            missing = [m for m in ("HR@10", "NDCG@10") if m not in a["aggregate"] or m not in b["aggregate"]]
            if missing:
                fail(f"{run_a} / {run_b}: summaries without {missing}")
            if a["seeds"] != b["seeds"]:
                console.print(f"[yellow]warning:[/] seeds differ ({a['seeds']} vs {b['seeds']}); pairing by order")
            print_comparison(
                b["per_seed"],
                a["per_seed"],
                name_a=str(run_b),
                name_b=str(run_a),
                metrics=[m for m in a["aggregate"] if m.startswith(("HR@", "NDCG@"))],
                console=console,
            )
            return
        if a.get("dataset") != b.get("dataset"):
            fail(
                f"{run_a} and {run_b} were evaluated on different datasets ({a.get('dataset')!r} vs "
                f"{b.get('dataset')!r}); a paired test needs the same users"
            )
        ra, rb = EvalResult.from_dict(a["test"]), EvalResult.from_dict(b["test"])
        for run, r in ((run_a, ra), (run_b, rb)):
            if metric not in r.overall:
                fail(f"--metric {metric}: {run} reports {sorted(r.overall)}")
        if not np.array_equal(ra.users, rb.users) or not np.array_equal(ra.targets, rb.targets):
            fail(f"{run_a} and {run_b} have different test users or targets; a paired test needs the same ones")
        test = per_user_paired_test(rb, ra, metric)
        console.print(
            f"{run_b} vs {run_a}, {metric} over {test.n} users: {rb.overall[metric]:.4f} vs "
            f"{ra.overall[metric]:.4f}, lift {test.lift:+.2%}, paired t = {test.t:.3f}, p = {test.p:.3g}"
        )
