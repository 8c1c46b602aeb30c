"""Helpers shared by CLI commands: console, error exits, config overrides."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from rich.console import Console

console = Console(stderr=False)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def error_message(exc: BaseException) -> str:
    """The user-facing text of an error (a KeyError's message without repr quotes)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    text = str(exc)
    return text or type(exc).__name__


# Errors that describe a bad input (config, flag, file, run directory): printed as one line.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    OSError,
    RuntimeError,
    RecursionError,
    ArithmeticError,
)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a CLI command so that a bad input ends in ``error: <message>`` and exit code 2, and
    any other failure in a one-line internal error with exit code 1 — never a traceback
    (set ``PADREC_DEBUG=1`` to see one)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            err_console.print(
                "[bold red]interrupted[/] (finished phases and epochs are kept; run again to resume)", soft_wrap=True
            )
            raise typer.Exit(130) from None
        except USER_ERRORS as exc:
            if os.environ.get("PADREC_DEBUG"):
                raise
            fail(error_message(exc))
        except Exception as exc:  # noqa: BLE001 - the last line of defence of the CLI
            if os.environ.get("PADREC_DEBUG"):
                raise
            err_console.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {error_message(exc)} "
                "(a padrec bug; PADREC_DEBUG=1 shows the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def check_output_file(path: Path, flag: str) -> None:
    """Fail unless ``path`` can become a file: not a directory, its parent not a file."""
    if path.is_dir():
        fail(f"{flag} {path}: is a directory; give the path of a file to write")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        fail(f"{flag} {path}: {parent} is a file, not a directory")


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
        if not key.strip() or any(not part for part in key.strip().split(".")):
            fail(f"--set expects key.path=value with a non-empty dotted key, got '{pair}'")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def parse_ints(text: str | None, what: str) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3]; None -> []; an empty, malformed or repeating list is an error."""
    if text is None:
        return []
    try:
        values = [int(x) for x in text.replace(" ", "").split(",")]
    except ValueError:
        fail(f"{what}: expected comma-separated integers, got '{text}'")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        fail(f"{what}: {repeated} given more than once in '{text}'")
    return values
