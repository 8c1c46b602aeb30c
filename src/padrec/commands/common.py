"""Helpers shared by CLI commands: console, error exits, config overrides."""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import typer
import yaml
from rich.console import Console

console = Console(stderr=False)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def parse_set(pairs: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key.path=value`` overrides; values are read as YAML scalars/lists."""
    out = []
    for pair in pairs:
        if "=" not in pair:
            fail(f"--set expects key=value, got '{pair}'")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def parse_ints(text: str | None, what: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        fail(f"{what}: expected comma-separated integers, got '{text}'")
