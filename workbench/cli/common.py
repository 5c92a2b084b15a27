"""Shared CLI plumbing: one clear error line (exit 2) for bad input, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from workbench.devices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEVICES_HELP, DTYPES_HELP
from workbench.jsonfiles import write_json  # noqa: F401  (re-exported for the commands)
from workbench.seam.spec import SpecError
from workbench.texts import read_text  # noqa: F401  (re-exported for the commands)

# every command that loads a model takes these two (``device: Device = DEFAULT_DEVICE``)
Device = Annotated[str, typer.Option("--device", help=f"where the model runs: {DEVICES_HELP}")]
Dtype = Annotated[str, typer.Option("--dtype", help=f"weights and activations: {DTYPES_HELP}")]
__all__ = ["DEFAULT_DEVICE", "DEFAULT_DTYPE", "Device", "Dtype"]

# the errors that mean bad input, by (module, name); see user_errors
USER_ERRORS = (
    ("workbench.devices", "DeviceError"),
    ("workbench.models.convert", "MissingWeightsError"),
    ("workbench.models.registry", "UnknownModelError"),
    ("workbench.runners.hf", "InputError"),
    ("workbench.seam.attention", "CaptureError"),
    ("workbench.store.store", "StoreError"),
)


def user_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input. Looked up among the modules already imported, never imported
    here: an error of a module nobody imported cannot have been raised, and importing them (torch,
    transformers) would add seconds to a one-line error such as a damaged store's."""
    found = tuple(
        getattr(sys.modules[module], name)
        for module, name in USER_ERRORS
        if module in sys.modules and hasattr(sys.modules[module], name)
    )
    return (SpecError, *found, FileNotFoundError)


def friendly(function):
    """Turn the workbench's user errors into one line on stderr and exit code 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if not isinstance(error, user_errors()):
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper


RESULTS_HELP = "the store's folder (default $WORKBENCH_RESULTS, else ./results)"


@contextlib.contextmanager
def results_folder(results: Path | None):
    """Point ``paths.results_dir()`` (the one place the store's default lives) at ``results`` for the
    command's duration; subprocesses and Ray workers it starts inherit it."""
    if results is None:
        yield
        return
    before = os.environ.get("WORKBENCH_RESULTS")
    os.environ["WORKBENCH_RESULTS"] = str(results.expanduser())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("WORKBENCH_RESULTS", None)
        else:
            os.environ["WORKBENCH_RESULTS"] = before


def uses_store(function):
    """For a command that reads or writes the store: adds ``--results DIR`` and opens and checks the store
    before the command runs, so a corrupt or locked store is one error line (exit 2 through ``friendly``)
    before any model is loaded. Put it under ``@friendly``."""
    signature = inspect.signature(function, eval_str=True)  # Typer reads the replaced signature as is
    option = inspect.Parameter(
        "results",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(None, "--results", help=RESULTS_HELP),
        annotation=Optional[Path],  # noqa: UP045  (a real type: Typer reads it, not a string)
    )

    @functools.wraps(function)
    def wrapper(*args, results: Path | None = None, **kwargs):
        from workbench.store import default_store

        with results_folder(results):
            default_store().check()
            return function(*args, **kwargs)

    parameters = [p for p in signature.parameters.values() if p.name != "results"]
    wrapper.__signature__ = signature.replace(parameters=[*parameters, option])
    wrapper.__annotations__ = {**function.__annotations__, "results": Optional[Path]}  # noqa: UP045
    return wrapper


def runtime(device: str, dtype: str):
    """The resolved (device, dtype): call first in a command, so a missing device fails before any work."""
    from workbench.devices import resolve_runtime

    return resolve_runtime(device, dtype)


def load(model: str, where):
    """A causal LM on ``where`` (a ``Runtime`` from ``runtime``)."""
    from workbench.runners.hf import load_model

    return load_model(model, device=where.device, dtype=where.dtype)


def record(model) -> dict:
    """Where ``model`` ran, for ``workbench.pipeline.runner.write_run(runtime=...)``."""
    from workbench.devices import run_record

    return run_record(model)


def option(options_class, name: str, *flags: str, help: str | None = None, **kwargs):  # noqa: A002
    """A Typer option for the field ``name`` of a Step's options: its default is None, meaning the
    options' own default (the one place it is typed), which the help text shows; a field without a
    default is a required option."""
    import dataclasses

    from workbench.pipeline.options import flag

    field = {f.name: f for f in dataclasses.fields(options_class)}[name]
    text = help if help is not None else field.metadata.get("help", "")
    default = field.default
    if default is not dataclasses.MISSING and default is not None:
        shown = ",".join(str(v) for v in default) if isinstance(default, tuple) else default
        text += f" (default {shown})"
    required = default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    return typer.Option(... if required else None, *(flags or (flag(name),)), help=text, show_default=False,
                        **kwargs)  # fmt: skip


def build_options(options_class, arguments: dict, **renamed: str):
    """The Step's options from a command's arguments (its ``locals()``): each options field takes the
    argument of its name (``renamed``: field -> argument where they differ); an argument left out (None)
    keeps the options' default; a comma-separated string becomes a tuple field's values."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(options_class)
    values = {}
    for field in dataclasses.fields(options_class):
        value = arguments.get(renamed.get(field.name, field.name))
        if value is None:
            continue
        if isinstance(value, str) and _is_tuple(hints[field.name]):
            value = _split(value, _item_type(hints[field.name]), field.name)
            if value == () and field.default is None:
                continue  # "" = the default (all layers, ...)
        elif isinstance(value, list):
            value = tuple(value)
        values[field.name] = value
    return options_class(**values)


def _is_tuple(hint) -> bool:
    import typing

    return any(typing.get_origin(h) is tuple for h in (hint, *typing.get_args(hint)))


def _item_type(hint):
    import typing

    for h in (hint, *typing.get_args(hint)):
        if typing.get_origin(h) is tuple:
            return typing.get_args(h)[0]
    return str


def _split(value: str, kind, name: str) -> tuple:
    """``"1,2"`` -> ``(1, 2)`` for a tuple option (``""`` -> ``()``)."""
    from workbench.pipeline.options import flag

    parts = [part.strip() for part in value.split(",") if part.strip()]
    try:
        return tuple(kind(part) for part in parts)
    except ValueError:
        what = {int: "integers", float: "numbers"}.get(kind, "values")
        raise SpecError(f"{flag(name)} expects comma-separated {what}, got {value!r}") from None


def run_step(step: str, options, **kwargs):
    """Run the Step ``step`` on its own through the pipeline runner (which records exactly one run)."""
    from workbench.pipeline.runner import run_step as run

    return run(step, options, echo=lambda line: typer.echo(line, err=True), **kwargs)
