"""``padrec serve``: the HTTP recommendation service over a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from padrec.commands.common import console, fail, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_command(
        run_dir: Path = typer.Argument(..., help="A finished run directory (holds serving.safetensors)."),
        host: str = typer.Option("127.0.0.1", help="Address to bind (default: loopback only)."),
        port: int = typer.Option(8000, help="TCP port."),
        api_key: Optional[str] = typer.Option(
            None,
            "--api-key",
            envvar="PADREC_API_KEY",
            help="Require this value in header X-API-Key for POST /items (or set PADREC_API_KEY).",
        ),
        device: str = typer.Option("cpu", help="cpu or cuda, for the model."),
        encoder_device: str = typer.Option("cpu", help="Where the text encoder runs for new items."),
        threads: int = typer.Option(1, help="Torch CPU threads per request (1 suits many concurrent requests)."),
        ann_threshold: int = typer.Option(
            200_000, help="Use a faiss ANN index above this many items (0 = always exact top-k)."
        ),
        ann_kind: str = typer.Option("hnsw", help="ANN index: hnsw (graph) or ivf (inverted lists)."),
        ann_ef_search: int = typer.Option(128, help="hnsw: candidate list per query (recall against speed)."),
        ann_nprobe: int = typer.Option(32, help="ivf: inverted lists scanned per query."),
        max_body: int = typer.Option(2_000_000, help="Largest request body accepted, in bytes (413 beyond)."),
        workers_log: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
        verbose: bool = typer.Option(False, "-v", "--verbose"),
    ) -> None:
        """Serve a run over HTTP: POST /recommend, /recommend/batch, /items (new items from
        text), GET /items, /items/{id}, /health, /metrics, a web page at / and the API docs at
        /docs. No language model runs per request; one runs once per new item.

        Example: padrec serve runs/pad --port 8000
        """
        setup_logging(verbose)
        if not 0 < port < 65536:
            fail(f"--port must be 1..65535, got {port}")
        if threads < 0 or ann_threshold < 0 or ann_nprobe < 1 or ann_ef_search < 1 or max_body < 1:
            fail("--threads and --ann-threshold must be >= 0; --ann-nprobe, --ann-ef-search and --max-body >= 1")
        if ann_kind not in ("hnsw", "ivf"):
            fail(f"--ann-kind must be hnsw or ivf, got {ann_kind!r}")
        if api_key is not None and (not api_key.strip() or not api_key.isascii() or not api_key.isprintable()):
            fail("--api-key must be a non-empty string of printable ASCII characters (it travels in an HTTP header)")
        try:
            import uvicorn

            from padrec.serving.app import create_app
        except ImportError as exc:
            fail(f"serving needs FastAPI and uvicorn: pip install 'padrec[serve]' ({exc})")
        from padrec.serving import Recommender
        from padrec.serving.ann import AnnConfig
        from padrec.training.memory import limit_malloc_arenas

        # request threads each get a malloc arena otherwise: resident memory then grows with
        # every POST /items until the arenas fill (BENCHMARKS.md §8.4)
        limit_malloc_arenas(2)

        rec = Recommender.load(
            run_dir,
            device=device,
            num_threads=threads,
            ann=AnnConfig(threshold=ann_threshold, kind=ann_kind, ef_search=ann_ef_search, nprobe=ann_nprobe),
            encoder_device=encoder_device,
        )
        app = create_app(rec, api_key=api_key, max_body_bytes=max_body)
        info = rec.describe()
        console.print(
            f"serving {info['method']} ({rec.num_items} items, top-k {info['top_k']}, new items: "
            f"{info['new_items']}) on http://{host}:{port}  (docs: /docs)"
        )
        uvicorn.run(app, host=host, port=port, log_level=workers_log)
