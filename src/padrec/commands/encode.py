"""``padrec encode``: build (or fetch from the cache) a dataset's item text-embedding matrix."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from padrec.commands.common import console, fail, parse_set, setup_logging

_HELP = """Encode every item's text into the frozen (N+1) x D matrix that language-model methods use.

Renders one text per item with a template, encodes only texts not already in the content-addressed cache, and prints throughput and where the matrix is stored. Row 0 (padding) is zeros. Nothing is downloaded: the default encoder is the offline MiniLM (384-d).

Examples:

  padrec encode                        (Prime Pantry titles, offline MiniLM)

  padrec encode games --threads 2 --output out/games_text

  padrec encode -e causal-lm -t faerec --check

  padrec encode -e causal-lm -o model=/models/llm2vec -o dtype=bfloat16 --device cuda

  padrec encode -e openai -o base_url=http://127.0.0.1:8000/v1 -o model=bge-m3 -o api_key_env=

  padrec encode -e precomputed -o path=vectors.npy -o ids=ids.json

  padrec encode --check --check-ids B0000DIWNI,B00005BPJO -k 8
"""


def _load(dataset: str) -> Any:
    from padrec.data.loading import load_dataset, resolve_dataset

    return load_dataset(resolve_dataset(dataset))


def _print_check(ds: Any, emb: Any, items: list[int], k: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    from padrec.text.check import nearest_neighbours

    titles = ds.titles()
    has_titles = any(titles[1:])

    def label(i: int) -> str:
        text = titles[i] if has_titles else ""
        return escape(f"{text[:70]} [{ds.item_ids[i]}]" if text else str(ds.item_ids[i]))

    table = Table(title=f"nearest neighbours by cosine (k={k})", show_lines=True)
    table.add_column("item")
    table.add_column("neighbours (cosine)")
    for nb in nearest_neighbours(emb.matrix, items, k=k):
        lines = [f"{s:.3f}  {label(j)}" for j, s in zip(nb.ids, nb.scores)] or ["(no vector: item has no text)"]
        table.add_row(label(nb.item), "\n".join(lines))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``encode`` command to ``app``."""

    @app.command("encode", help=_HELP)
    def encode_command(
        dataset: str = typer.Argument(
            "prime_pantry",
            help="Built-in/shared dataset name (prime_pantry, games, ...) or a path to a dataset file/directory.",
        ),
        encoder: str = typer.Option(
            "sentence-transformers",
            "--encoder",
            "-e",
            help="Encoder: sentence-transformers, causal-lm, openai or precomputed.",
        ),
        option: Annotated[
            list[str] | None,
            typer.Option(
                "--option",
                "-o",
                metavar="KEY=VALUE",
                help="Encoder option, repeatable (e.g. -o model=/path -o dtype=bfloat16).",
            ),
        ] = None,
        template: str = typer.Option(
            "title", "--template", "-t", help="title, faerec, or a template string like '{title}[ by {brand}]'."
        ),
        missing: str = typer.Option("error", "--missing", help="Items without text: error or zero (zero rows)."),
        batch_size: int = typer.Option(128, "--batch-size", "-b", help="Texts per batch (per request for openai)."),
        device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
        threads: int = typer.Option(0, "--threads", help="Torch CPU threads (0 = torch's default)."),
        cache_dir: str = typer.Option("", "--cache-dir", help="Cache root (default $PADREC_CACHE or ~/.cache/padrec)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Encode everything; neither read nor write the cache."),
        output: str = typer.Option("", "--output", help="Also write the matrix to OUTPUT.safetensors + OUTPUT.json."),
        check: bool = typer.Option(False, "--check", help="Print nearest-neighbour titles for a few items."),
        check_items: int = typer.Option(5, "--check-items", help="How many random items --check shows."),
        check_ids: str = typer.Option("", "--check-ids", help="Comma-separated original item ids for --check."),
        k: int = typer.Option(5, "--neighbours", "-k", help="Neighbours per item for --check."),
        seed: int = typer.Option(0, "--seed", help="Seed choosing the --check items."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        verbose: bool = typer.Option(False, "-v", "--verbose", help="Log progress."),
    ) -> None:
        setup_logging(verbose)
        from rich.markup import escape

        from padrec.config import ConfigError, from_dict
        from padrec.data import DataError
        from padrec.text import TextConfig, TextError, build_text_embeddings
        from padrec.text.check import pick_items
        from padrec.text.errors import MissingDependencyError

        try:
            options = dict(parse_set(option or []))
            for key, value in options.items():
                if "." in key:
                    fail(f"--option {key}: encoder options are plain keys (e.g. model=..., dtype=...)")
                if value is None:  # "key=" means an empty string, e.g. api_key_env=
                    options[key] = ""
            cfg = from_dict(
                TextConfig,
                {
                    "encoder": encoder,
                    "encoder_config": options,
                    "template": template,
                    "on_missing": missing,
                    "batch_size": batch_size,
                    "device": device,
                    "num_threads": threads,
                    "cache_dir": cache_dir,
                    "use_cache": not no_cache,
                },
                where="encode",
            )
            ds = _load(dataset)
            emb = build_text_embeddings(ds, cfg, progress=not quiet)
            check_list: list[int] = []
            if check:
                if check_ids:
                    id_map = ds.item_id_map()
                    wanted = [x.strip() for x in check_ids.split(",") if x.strip()]
                    unknown = [x for x in wanted if x not in id_map]
                    if unknown:
                        fail(escape(f"--check-ids: unknown item id(s) {', '.join(unknown[:5])} in {ds.name}"))
                    check_list = [id_map[x] for x in wanted]
                else:
                    check_list = pick_items(ds.num_items, check_items, seed)
        except (TextError, DataError, ConfigError, MissingDependencyError, FileNotFoundError) as exc:
            fail(escape(str(exc)))

        console.print(
            f"[bold]{escape(ds.name)}[/]: {emb.num_items:,} items -> matrix {emb.num_items + 1} x {emb.dim} "
            f"({emb.encoder}, template {emb.template or '-'}, device {emb.device})",
            highlight=False,
            soft_wrap=True,
        )
        if emb.encoded:
            console.print(
                f"encoded {emb.encoded:,} distinct texts in {emb.encode_seconds:.1f} s "
                f"({emb.items_per_second or 0:.1f} items/s; model load {emb.load_seconds:.1f} s)",
                highlight=False,
                soft_wrap=True,
            )
        if emb.cache_hits:
            console.print(f"{emb.cache_hits:,} distinct texts taken from the cache", highlight=False, soft_wrap=True)
        if emb.missing_ids:
            console.print(
                f"{len(emb.missing_ids):,} items had no text and got zero rows", highlight=False, soft_wrap=True
            )
        console.print(f"total {emb.total_seconds:.2f} s", highlight=False, soft_wrap=True)
        if emb.cache_path:
            console.print(f"cache: {emb.cache_path}", highlight=False, soft_wrap=True)
        if output:
            try:
                st_path, js_path = emb.save(output)
            except OSError as exc:
                fail(escape(f"{output}: cannot write ({exc})"))
            console.print(f"matrix written to {st_path} (+ {js_path.name})", highlight=False, soft_wrap=True)
        if check:
            _print_check(ds, emb, check_list, k)
