"""The ``padrec`` command line. Each sub-command lives in ``padrec.commands.<name>``.

This module only assembles the Typer app; commands parse their options and call library
functions.
"""

from __future__ import annotations

import importlib

import typer

from padrec.commands.common import guarded

app = typer.Typer(
    name="padrec",
    help="Sequential recommendation enhanced by language models: PAD and ID-only baselines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = ["data", "train", "evaluate", "encode", "analyze", "recommend", "serve", "reproduce"]

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"padrec.commands.{_name}")
    except ModuleNotFoundError as exc:  # command not built yet in this checkout
        if exc.name != f"padrec.commands.{_name}":
            raise
        continue
    _mod.register(app)

# Every command ends a bad input with "error: ..." and exit code 2, never a traceback.
for _command in app.registered_commands:
    _command.callback = guarded(_command.callback)


def main() -> None:
    app(prog_name="padrec")


if __name__ == "__main__":
    main()
