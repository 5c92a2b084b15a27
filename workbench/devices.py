"""Where a model runs and in which precision: the one place that turns ``--device``/``--dtype`` (CLI,
pipeline YAML, executors, the app) into a ``torch.device`` and a ``torch.dtype``.

    auto   -> CUDA when available (bfloat16 there, float16 on cards without bf16), else CPU (float32)
    cpu | cuda | cuda:N,   float32 | bfloat16 | float16

A device that is not there is a ``DeviceError`` (a user error: one line, exit 2 from the CLI), raised
before any model is loaded. torch is imported inside the functions so ``workbench --help`` stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DEVICE = "auto"
DEFAULT_DTYPE = "auto"
DEVICES_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"
DTYPES = ("float32", "bfloat16", "float16")
DTYPES_HELP = "auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16 or float16"
ENV_DEVICE, ENV_DTYPE = "WORKBENCH_DEVICE", "WORKBENCH_DTYPE"  # how `workbench app` tells the dashboard
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


class DeviceError(ValueError):
    """A device or dtype that cannot be used here; nothing was loaded or written."""


def resolve_device(name: str | None = DEFAULT_DEVICE):
    """``torch.device`` for ``name`` (see the module docstring); DeviceError if it is not available."""
    import torch

    name = (name or DEFAULT_DEVICE).strip().lower() if name is None or isinstance(name, str) else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(name)
    if match is None:
        raise DeviceError(f"unknown device {name!r}; use {DEVICES_HELP}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for but CUDA is not available here; use --device cpu (or auto)")
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"device {name!r} does not exist: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index)


def resolve_dtype(name: str | None, device) -> object:
    """``torch.dtype`` for ``name`` on ``device`` (a ``torch.device`` from ``resolve_device``)."""
    import torch

    if name is None or isinstance(name, str):
        name = (name or DEFAULT_DTYPE).strip().lower()
    else:  # a torch.dtype
        name = str(name).replace("torch.", "")
    if name == "auto":
        if getattr(device, "type", str(device)) == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}; use {DTYPES_HELP}")
    return getattr(torch, name)


def check_names(device: str | None, dtype: str | None) -> None:
    """Syntax check only (no torch, no CUDA probe): for files read on one machine and run on another
    (pipeline YAML, job specs). ``resolve_device`` does the availability check where the model loads."""
    device_name = (device or DEFAULT_DEVICE).strip().lower()
    if device_name not in ("auto", "cpu") and not _CUDA.match(device_name):
        raise DeviceError(f"unknown device {device!r}; use {DEVICES_HELP}")
    dtype_name = (dtype or DEFAULT_DTYPE).strip().lower()
    if dtype_name != "auto" and dtype_name not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}; use {DTYPES_HELP}")


@dataclass(frozen=True)
class Runtime:
    """A resolved (device, dtype) pair; pass ``device=runtime.device, dtype=runtime.dtype`` to a loader."""

    device: object  # torch.device
    dtype: object  # torch.dtype

    def to_dict(self) -> dict:
        return {"device": str(self.device), "dtype": dtype_name(self.dtype)}


def resolve_runtime(device: str | None = DEFAULT_DEVICE, dtype: str | None = DEFAULT_DTYPE) -> Runtime:
    """Both at once; call it before reading models or writing anything."""
    resolved = resolve_device(device)
    return Runtime(resolved, resolve_dtype(dtype, resolved))


def runtime_from_environment() -> Runtime:
    """The dashboard's (device, dtype): ``$WORKBENCH_DEVICE``/``$WORKBENCH_DTYPE`` (set by ``workbench app
    --device/--dtype``), else auto."""
    import os

    return resolve_runtime(os.environ.get(ENV_DEVICE) or DEFAULT_DEVICE, os.environ.get(ENV_DTYPE) or DEFAULT_DTYPE)


def dtype_name(dtype) -> str | None:
    return None if dtype is None else str(dtype).replace("torch.", "")


def run_record(model) -> dict:
    """What the store records about where a run ran: device, dtype and the attention backend(s) that the
    model's seam used (``Model.backend``; None when nothing ran through the seam yet)."""
    import torch

    parameter = next(model.hf.parameters(), None)
    return {
        "device": str(parameter.device) if parameter is not None else None,
        "dtype": dtype_name(parameter.dtype) if parameter is not None else dtype_name(torch.get_default_dtype()),
        "backend": getattr(model, "backend", None),
    }
