"""The ``workbench`` command line (Typer). Each command group lives in its own module here."""

from __future__ import annotations

import importlib
import os

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Attention workbench: statistics, head tables, interventions.",
)



@app.callback()
def _global_options(
    online: bool = typer.Option(
        False,
        "--online",
        help="let Hugging Face ids download from the hub (default: local files only; same as WORKBENCH_ONLINE=1)",
    ),
) -> None:
    if online:
        os.environ["WORKBENCH_ONLINE"] = "1"  # paths.hub_online() reads it: the switch has one home


# modules that add commands to ``app``, one per analysis; a module not present yet is skipped
COMMAND_MODULES = [
    "workbench.cli.core",
    "workbench.cli.retrieval",
    "workbench.cli.sinks",
    "workbench.cli.rhythm",
    "workbench.cli.lofit",
    "workbench.cli.binding",
    "workbench.cli.dashboard",
    "workbench.cli.pipeline",
    "workbench.cli.compare",
]

for _name in COMMAND_MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as _error:
        if _error.name != _name:
            raise


def main() -> None:  # pragma: no cover
    app()
