"""The ``workbench`` command line (Typer). Each command group lives in its own module here."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Attention workbench: statistics, head tables, interventions.")

# modules that add commands to ``app``; a new analysis appends its module name here
COMMAND_MODULES = ["workbench.cli.core"]

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main() -> None:  # pragma: no cover
    app()
