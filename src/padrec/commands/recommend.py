"""``padrec recommend``: top-k for a history of item ids or titles from a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from padrec.commands.common import console, fail, setup_logging


def resolve_items(tokens: list[str], item_ids: list[str], titles: list[str]) -> list[int]:
    """Map each token to an internal id: an original item id, ``#N`` (internal id), an exact
    title (case-insensitive) or a unique title substring. Errors list close candidates."""
    by_id = {str(k): i for i, k in enumerate(item_ids) if i > 0}
    lower = [t.lower() for t in titles]
    by_title: dict[str, int] = {}
    for i, t in enumerate(lower):
        if i > 0 and t and t not in by_title:
            by_title[t] = i
    out = []
    for tok in tokens:
        tok = tok.strip()
        if not tok:
            continue
        if tok in by_id:
            out.append(by_id[tok])
        elif tok.startswith("#") and tok[1:].isdigit() and 0 < int(tok[1:]) < len(item_ids):
            out.append(int(tok[1:]))
        elif tok.lower() in by_title:
            out.append(by_title[tok.lower()])
        else:
            hits = [i for i, t in enumerate(lower) if i > 0 and tok.lower() in t]
            if len(hits) == 1:
                out.append(hits[0])
            elif not hits:
                raise KeyError(f"'{tok}' matches no item id or title")
            else:
                shown = "; ".join(f"{item_ids[i]}: {titles[i][:60]}" for i in hits[:5])
                raise KeyError(
                    f"'{tok}' matches {len(hits)} titles ({shown}{' ...' if len(hits) > 5 else ''}); "
                    "be more specific or give the item id"
                )
    return out


def _dataset_items(run_dir: Path) -> tuple[list[str], list[str]]:
    """Raw item ids and titles read from the run's dataset (serving files of older runs)."""
    from padrec.data.loading import load_dataset
    from padrec.experiment import load_experiment_config
    from padrec.io import read_json

    cfg = load_experiment_config(read_json(run_dir / "serving.json")["experiment"], saved=True)
    ds = load_dataset(cfg.data)
    return [str(x) for x in ds.item_ids], ds.titles()


def register(app: typer.Typer) -> None:
    @app.command("recommend")
    def recommend_command(
        run_dir: Path = typer.Argument(..., help="A finished run directory (holds serving.safetensors)."),
        history: list[str] = typer.Option(
            [],
            "--history",
            "-H",
            help="One history item, oldest first; repeat for each item: an original id, #internal id, "
            "title or unique title fragment (commas and bars are part of the title).",
        ),
        history_file: Optional[Path] = typer.Option(
            None, "--history-file", help="A text file with one history item per line (same forms as -H)."
        ),
        k: int = typer.Option(10, "-k", help="How many items to return (1 .. the items that can be recommended)."),
        repeat: int = typer.Option(20, help="Time this many calls and report the median latency."),
        device: str = typer.Option("cpu", help="cpu or cuda."),
        threads: int = typer.Option(1, help="Torch CPU threads for serving."),
        verbose: bool = typer.Option(False, "-v", "--verbose"),
    ) -> None:
        """Top-k next items for a history, with titles and latency. No language model runs:
        item vectors were precomputed when the run finished.

        Example: padrec recommend runs/pad -H B00099XNXS -H B00UBJQHMU -k 5
        """
        setup_logging(verbose)
        import statistics
        import time

        from rich.table import Table

        from padrec.serving import Recommender

        if repeat < 0:
            fail(f"--repeat must be >= 0, got {repeat}")
        tokens = list(history)
        if history_file is not None:
            try:
                tokens += [line.strip() for line in history_file.read_text(encoding="utf-8").splitlines()]
            except (OSError, UnicodeDecodeError) as exc:
                fail(f"--history-file {history_file}: cannot read it ({exc})")
        tokens = [t for t in tokens if t.strip()]
        if not tokens:
            fail("the history is empty: give items with -H (repeatable) or --history-file")
        t0 = time.perf_counter()
        rec = Recommender.load(run_dir, device=device, num_threads=threads)
        item_ids, titles = rec.item_ids, rec.titles
        if item_ids is None or titles is None:  # a serving file from before ids and titles were exported
            item_ids, titles = _dataset_items(run_dir)
        load_s = time.perf_counter() - t0
        hist = resolve_items(tokens, item_ids, titles)
        available = rec.num_items - (len(set(hist)) if rec.exclude_history else 0)
        if not 1 <= k <= available:
            fail(
                f"-k must be between 1 and {available} (the {rec.num_items} catalogue items"
                f"{' less the history' if rec.exclude_history else ''}), got {k}"
            )
        answer = rec.recommend(hist, k)
        times = [rec.recommend(hist, k).latency_ms for _ in range(repeat)]
        table = Table(title=f"history ({len(hist)} items)")
        table.add_column("#")
        table.add_column("item")
        table.add_column("title")
        for i in hist:
            table.add_row("", item_ids[i], titles[i][:80])
        console.print(table)
        table = Table(title=f"top-{k}")
        for col in ("rank", "item", "score", "title"):
            table.add_column(col)
        for r, (i, s) in enumerate(zip(answer.items, answer.scores), 1):
            table.add_row(str(r), item_ids[i], f"{s:.3f}", titles[i][:80])
        console.print(table)
        med = statistics.median(times) if times else answer.latency_ms
        console.print(
            f"latency: first call {answer.latency_ms:.2f} ms, median of {len(times)} calls {med:.2f} ms "
            f"(load {load_s:.2f} s, {threads} thread(s), {device})"
        )
