"""Typer sub-groups shared by several analyses: ``workbench heads ...``, ``eval ...``, ``validate ...``.

Import the group you add commands to (``from workbench.cli.groups import heads_app``); importing this
module registers the groups on ``app`` exactly once (Python caches the module).
"""

from __future__ import annotations

import typer

from workbench.cli import app

heads_app = typer.Typer(no_args_is_help=True, help="Find heads of a kind; each writes HEADS.json and records the run.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate a model (optionally under interventions) on a task.")
validate_app = typer.Typer(no_args_is_help=True, help="Causal checks: does intervening on the found heads matter?")

app.add_typer(heads_app, name="heads")
app.add_typer(eval_app, name="eval")
app.add_typer(validate_app, name="validate")
