"""``padrec reproduce``: train every row of a paper's table and write the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from padrec.commands.common import console, fail, parse_ints, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("reproduce")
    def reproduce_command(
        table: Optional[str] = typer.Argument(None, help="Table name (see --list), e.g. pad-table2."),
        data: Optional[str] = typer.Option(
            None, "--data", "-d", help="Dataset for every row, e.g. prime_pantry or games (default: each config's)."
        ),
        seeds: str = typer.Option("1,2,3", help="Comma-separated training seeds."),
        backbone: Optional[str] = typer.Option(None, help="Replace every row's backbone (e.g. lrurec)."),
        only: Optional[str] = typer.Option(None, help="Comma-separated rows to train now (others: reported if done)."),
        runs_dir: Path = typer.Option(Path("runs/reproduce"), help="Parent of the run directories."),
        out: Path = typer.Option(Path("results/reproduce"), "--out", "-o", help="Where the report files go."),
        threads: int = typer.Option(0, help="Torch threads per run (0 = torch's default)."),
        configs: Optional[Path] = typer.Option(None, help="The configs directory (default: this checkout's)."),
        sets: list[str] = typer.Option([], "--set", help="key=value override for every row (repeatable)."),
        list_tables: bool = typer.Option(False, "--list", help="List the tables and their rows, then exit."),
        verbose: bool = typer.Option(False, "-v", "--verbose"),
    ) -> None:
        """Run every row of a paper's table on one split and evaluator, reusing finished runs.

        Writes <out>/<table>_<data>.md, .json and .png: mean ± std over seeds of HR@10, NDCG@10,
        warm/median/cold and tail NDCG@10, Coverage@10 and Tail-Coverage@10, and the paired t-test
        of the best method against the best baseline (over seeds; over users for one seed).

        Example: padrec reproduce pad-table2 --data prime_pantry --seeds 1,2,3
        """
        setup_logging(verbose)
        from padrec.reproduce import TABLES, configs_dir, markdown, row_status, run_table, write_report

        if list_tables or table is None:
            cfg_dir = configs_dir(configs)
            for t in TABLES.values():
                console.print(f"[bold]{t.name}[/]: {t.title}", soft_wrap=True)
                for r in t.rows:
                    status = row_status(r, cfg_dir)
                    line = f"    {r.name:32s} {r.role:9s} {r.config}  {'' if status == 'ok' else status}"
                    console.print(line, soft_wrap=True)
            if table is None and not list_tables:
                fail("name a table (see the list above)")
            return
        if table not in TABLES:
            fail(f"unknown table '{table}'; known: {', '.join(TABLES)}")
        seed_list = parse_ints(seeds, "--seeds")
        if not seed_list:
            fail("--seeds: give at least one seed")
        only_rows = [r for r in (only or "").split(",") if r]
        report = run_table(
            TABLES[table],
            data=data,
            seeds=seed_list,
            backbone=backbone,
            runs_dir=runs_dir,
            only=only_rows,
            threads=threads,
            extra_sets=list(sets),
            cfg_dir=configs,
            echo=console.print,
        )
        paths = write_report(report, out)
        console.print(markdown(report))
        console.print("written: " + ", ".join(str(p) for p in paths.values()))
