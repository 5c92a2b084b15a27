"""Shared CLI plumbing: one clear error line (exit 2) for bad input, never a traceback."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from workbench.devices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEVICES_HELP, DTYPES_HELP
from workbench.jsonfiles import write_json  # noqa: F401  (re-exported for the commands)
from workbench.seam.spec import SpecError

# every command that loads a model takes these two (``device: Device = DEFAULT_DEVICE``)
Device = Annotated[str, typer.Option("--device", help=f"where the model runs: {DEVICES_HELP}")]
Dtype = Annotated[str, typer.Option("--dtype", help=f"weights and activations: {DTYPES_HELP}")]
__all__ = ["DEFAULT_DEVICE", "DEFAULT_DTYPE", "Device", "Dtype"]


def user_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input. Imported when a command fails, not when the CLI starts: the
    modules that define them import torch and transformers, and ``workbench --help`` must stay fast."""
    from workbench.devices import DeviceError
    from workbench.models.convert import MissingWeightsError
    from workbench.models.registry import UnknownModelError
    from workbench.runners.hf import InputError
    from workbench.seam.attention import CaptureError
    from workbench.store.store import StoreError

    return (
        DeviceError,
        SpecError,
        InputError,
        UnknownModelError,
        CaptureError,
        StoreError,
        MissingWeightsError,
        FileNotFoundError,
    )


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


def read_text(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"text file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        from workbench.runners.hf import InputError

        raise InputError(f"the text file {path} is empty")
    return text


def parse_ints(value: str | None) -> tuple[int, ...] | None:
    if value is None or value == "":
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise SpecError(f"expected comma-separated integers, got {value!r}") from None




def runtime(device: str, dtype: str):
    """The resolved (device, dtype): call first in a command, so a missing device fails before any work."""
    from workbench.devices import resolve_runtime

    return resolve_runtime(device, dtype)


def load(model: str, where):
    """A causal LM on ``where`` (a ``Runtime`` from ``runtime``)."""
    from workbench.runners.hf import load_model

    return load_model(model, device=where.device, dtype=where.dtype)


def record(model) -> dict:
    """Where ``model`` ran, for ``Store.put_run(runtime=...)``."""
    from workbench.devices import run_record

    return run_record(model)
