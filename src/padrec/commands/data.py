"""``padrec data``: statistics of a dataset, including frequency-bucket boundaries."""

from __future__ import annotations

import typer

from padrec.commands.common import console, fail, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("data")
    def data_command(
        dataset: str = typer.Argument(
            "prime_pantry",
            help="Built-in/shared dataset name (prime_pantry, beauty, "
            "food, yelp, games) or a path to a file/directory in a supported format.",
        ),
        protocol: str = typer.Option("pad", help="Split protocol: pad or faerec."),
        max_len: int = typer.Option(0, help="History window (0 = the protocol's default)."),
        buckets: int = typer.Option(10, help="Number of equal-mass frequency buckets."),
        json_out: str = typer.Option("", "--json", help="Also write the statistics to this JSON file."),
        no_cache: bool = typer.Option(
            False, "--no-cache", help="Re-read the source files instead of the processed cache."
        ),
        verbose: bool = typer.Option(False, "-v", "--verbose", help="Log progress."),
    ) -> None:
        """Print dataset statistics: users, items, lengths, buckets, warm/median/cold, head/tail.

        Example: padrec data prime_pantry --buckets 10
        """
        setup_logging(verbose)
        from padrec.config import ConfigError, from_dict
        from padrec.data import SplitConfig, compute_item_stats, make_split
        from padrec.data.loading import load_dataset, resolve_dataset
        from padrec.data.summary import dataset_summary, print_summary
        from padrec.io import write_json

        try:
            split_cfg = from_dict(SplitConfig, {"protocol": protocol, "max_len": max_len}, where="split")
        except ConfigError as exc:
            flag = "--protocol" if "protocol" in str(exc) else "--max-len"
            fail(f"{flag}: {str(exc).split('split.', 1)[-1]}")
        if not 1 <= buckets <= 1000:
            fail(f"--buckets must be between 1 and 1000, got {buckets}")
        cfg = resolve_dataset(dataset)
        if no_cache:
            cfg.use_cache = False
        ds = load_dataset(cfg)
        split = make_split(ds, split_cfg)
        stats = compute_item_stats(ds, num_buckets=buckets)
        summary = dataset_summary(ds, stats, split)
        print_summary(summary, console)
        if json_out:
            write_json(json_out, summary)
            console.print(f"statistics written to {json_out}")
