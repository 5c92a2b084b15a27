"""Which key pass runs: the Gluon Hopper kernel, the Triton kernel, the interpreter or the PyTorch reference.

The Gluon kernel (``gluon_key_pass``) is optional and opt-in: it runs only when asked for
(``WORKBENCH_KEY_PASS=gluon`` or ``preference("gluon")``) and every link of this chain allows it:

    Triton imports            else  reference            (PyTorch, fp32)
    a CUDA tensor             else  triton-interpreter   (TRITON_INTERPRET=1) or reference
    Gluon asked for           else  triton               (the default until a GPU run shows it faster)
    Triton in the pinned series (GLUON_TRITON_SERIES)    else  triton
    Gluon's Hopper API imports                           else  triton
    the device is sm_90                                  else  triton
    ptxas new enough for sm_90a (TOOLCHAIN_MIN_PTXAS)    else  triton
    the call is one the kernel covers (dtype, head dim, no pooled map, TMA-alignable strides)  else triton
    the kernel compiles and launches                     else  triton (remembered for the process)

Every answer is a ``KeyPassPath`` (name + reason); ``api.key_pass_path()`` gives it for the machine,
``api.last_key_pass_path()`` for the last call. Nothing falls back silently: the path that ran and why is
recorded, and a Gluon failure at launch also warns once.
Importing this module needs neither torch nor Triton.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass

GLUON = "gluon-hopper"
TRITON = "triton"
INTERPRETER = "triton-interpreter"
REFERENCE = "reference"

GLUON_TRITON_SERIES = "3.6"
"""The Triton release the Gluon kernel is written and compiled against (the GPU machine's: torch 2.11 +
triton 3.6). Gluon is experimental and its API changes between releases (``warp_specialize`` took
``(default_args, default_fn, worker_args, worker_fns, ...)`` in 3.5 and a list of (fn, args) in 3.6;
3.9 removed ``tma.async_copy_global_to_shared`` for ``tma.async_load``), so
any other version runs the Triton kernel, with the version in the reason."""
TOOLCHAIN_MIN_PTXAS = (12, 3)
PREFERENCE_ENV = "WORKBENCH_KEY_PASS"
PREFERENCES = ("triton", "gluon")
GLUON_HEAD_DIMS = (64, 128)
GLUON_DTYPES = ("float16", "bfloat16")

_preference: str | None = None
_launch_failures: dict[tuple, str] = {}


@dataclass(frozen=True)
class KeyPassPath:
    """The key pass that runs (``name``: gluon-hopper, triton, triton-interpreter or reference) and why."""

    name: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def gluon_launch_config(head_dim: int) -> dict:
    """Tiles of the Gluon kernel: BLOCK_M queries per wgmma (its N), STAGES query tiles in flight.
    Shared memory: STAGES * BLOCK_M * D * 2 + 2 * 64 * D * 2 bytes (d = 128: 96 + 32 KB)."""
    stages = 3 if head_dim > 64 else 4
    return {"BLOCK_M": 128, "STAGES": stages, "num_warps": 4, "CONSUMER_REGS": 232, "LOADER_REGS": 40}


def preferred() -> str:
    """The key pass asked for: ``preference(...)`` if inside one, else $WORKBENCH_KEY_PASS, else triton."""
    choice = _preference or os.environ.get(PREFERENCE_ENV, "").strip().lower() or "triton"
    if choice not in PREFERENCES:
        raise ValueError(f"{PREFERENCE_ENV}={choice!r}; choose one of {PREFERENCES}")
    return choice


@contextlib.contextmanager
def preference(name: str) -> Iterator[None]:
    """Ask for ``name`` ("gluon" or "triton") inside the block (benchmarks, tests)."""
    global _preference
    if name not in PREFERENCES:
        raise ValueError(f"unknown key pass {name!r}; choose one of {PREFERENCES}")
    previous, _preference = _preference, name
    try:
        yield
    finally:
        _preference = previous


# Probes: one function per link, so tests can replace each one.
def triton_version() -> str | None:
    """Triton's version, or None when it does not import."""
    try:
        import triton
    except Exception:
        return None
    return str(triton.__version__)


def triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401
    except Exception as error:
        return f"Triton does not import ({type(error).__name__}: {error})"
    return None


def version_error(version: str) -> str | None:
    """Why this Triton version cannot run the Gluon kernel, or None (same major.minor as the pin)."""
    if ".".join(version.split("+")[0].split(".")[:2]) != GLUON_TRITON_SERIES:
        return (
            f"Triton {version} is not the {GLUON_TRITON_SERIES}.x series the Gluon key pass is written "
            f"against (Gluon's API changes between releases); install triton=={GLUON_TRITON_SERIES}.* to use it"
        )
    return None


@functools.lru_cache(maxsize=1)
def gluon_import_error() -> str | None:
    """Why the Gluon kernel module does not import, or None."""
    try:
        from triton.experimental.gluon.language import warp_specialize  # noqa: F401
        from triton.experimental.gluon.language.nvidia.hopper import (  # noqa: F401
            mbarrier,
            tma,
            warpgroup_mma,
            warpgroup_mma_wait,
        )
        from triton.experimental.gluon.nvidia.hopper import TensorDescriptor  # noqa: F401
        from workbench_kernels import gluon_key_pass  # noqa: F401
    except Exception as error:
        return f"Gluon's Hopper API does not import ({type(error).__name__}: {error})"
    return None


def device_capability(device) -> tuple[int, int]:
    import torch

    return tuple(torch.cuda.get_device_capability(device))


@functools.lru_cache(maxsize=1)
def toolchain_error() -> str | None:
    """Why the ptxas Triton uses cannot build sm_90a warp-specialised code, or None."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas_version

        text = str(get_ptxas_version(90))
    except Exception as error:
        return f"ptxas for sm_90 not found ({type(error).__name__}: {error})"
    import re

    found = re.search(r"(\d+)\.(\d+)", text)
    if not found:
        return f"cannot read ptxas's version from {text!r}"
    version = (int(found.group(1)), int(found.group(2)))
    if version < TOOLCHAIN_MIN_PTXAS:
        return (
            f"ptxas {version[0]}.{version[1]} is older than {TOOLCHAIN_MIN_PTXAS[0]}.{TOOLCHAIN_MIN_PTXAS[1]}"
        )
    return None


def gluon_unavailable(device) -> str | None:
    """Why the Gluon kernel cannot run on ``device`` with this software, or None when it can."""
    version = triton_version()
    if version is None:
        return triton_import_error() or "Triton does not import"
    problem = version_error(version)
    if problem:
        return problem
    problem = gluon_import_error()
    if problem:
        return problem
    major, minor = device_capability(device)
    if (major, minor) != (9, 0):
        return f"the device is sm_{major}{minor}; the Gluon key pass is written for sm_90 (H100 / H200)"
    return toolchain_error()


def call_unsupported(q, k, *, pooled_cells: int) -> str | None:
    """Why the Gluon kernel does not cover this call (it still runs on Triton), or None."""
    dtype = str(q.dtype).removeprefix("torch.")
    if dtype not in GLUON_DTYPES:
        return f"{dtype} inputs; the Gluon key pass takes {' or '.join(GLUON_DTYPES)}"
    if q.shape[-1] not in GLUON_HEAD_DIMS:
        return f"head dim {q.shape[-1]}; the Gluon key pass takes {GLUON_HEAD_DIMS}"
    if pooled_cells:
        return "the pooled map is computed by the Triton key pass only"
    for name, tensor in (("q", q), ("k", k)):
        if (
            tensor.stride(-1) != 1
            or tensor.data_ptr() % 16
            or any(s * tensor.element_size() % 16 for s in tensor.stride()[:-1])
        ):
            return f"{name} strides {tuple(tensor.stride())} do not suit TMA (last stride 1, others 16-byte multiples)"
    return None


def _no_gpu_path(device_type: str) -> KeyPassPath:
    if os.environ.get("TRITON_INTERPRET") == "1":
        return KeyPassPath(
            INTERPRETER, f"{device_type} tensors: Triton's CPU interpreter (TRITON_INTERPRET=1)"
        )
    return KeyPassPath(REFERENCE, f"{device_type} tensors: the PyTorch reference in fp32 (no CUDA device)")


def choose(device=None, *, q=None, k=None, pooled_cells: int = 0) -> KeyPassPath:
    """The key pass for ``device`` (default: the current CUDA device, if any) and, given q and k, this call."""
    import torch

    problem = triton_import_error()
    if problem:
        return KeyPassPath(REFERENCE, f"{problem}: the PyTorch reference in fp32")
    if device is None:
        device = q.device if q is not None else (torch.device("cuda") if torch.cuda.is_available() else None)
    if device is None or torch.device(device).type != "cuda":
        if q is not None and q.dtype == torch.bfloat16:
            return KeyPassPath(
                REFERENCE, "bf16 CPU tensors: the PyTorch reference (the interpreter gets bf16 wrong)"
            )
        return _no_gpu_path("CPU" if device is None else str(torch.device(device).type))
    device = torch.device(device)
    unavailable = gluon_unavailable(device)
    if preferred() != "gluon":
        state = f"unavailable: {unavailable}" if unavailable else "available"
        return KeyPassPath(
            TRITON,
            f"the default Triton key pass (the Gluon one is opt-in, {PREFERENCE_ENV}=gluon; here it is {state})",
        )
    if unavailable:
        return KeyPassPath(TRITON, f"Gluon key pass asked for but {unavailable}")
    if q is not None:
        problem = call_unsupported(q, k if k is not None else q, pooled_cells=pooled_cells)
        if problem:
            return KeyPassPath(TRITON, f"Gluon key pass asked for but {problem}")
        failure = _launch_failures.get(launch_key(q))
        if failure:
            return KeyPassPath(TRITON, f"Gluon key pass failed earlier in this process: {failure}")
    return KeyPassPath(GLUON, "asked for, and device, Triton version and toolchain allow it")


def launch_key(q) -> tuple:
    """Calls that share a compiled Gluon kernel: a failure is remembered per key."""
    return (str(q.device), str(q.dtype), int(q.shape[-1]))


def record_launch_failure(q, error: BaseException) -> KeyPassPath:
    """Remember that the Gluon kernel failed for calls like ``q``; returns the Triton path with the reason."""
    import warnings

    message = f"{type(error).__name__}: {error}".strip()
    if len(message) > 400:
        message = message[:400] + " ..."
    key = launch_key(q)
    first = key not in _launch_failures
    _launch_failures[key] = message
    if first:
        warnings.warn(f"Gluon key pass failed, running the Triton key pass instead: {message}", stacklevel=3)
    return KeyPassPath(TRITON, f"Gluon key pass failed at launch, ran the Triton key pass: {message}")


def clear_launch_failures() -> None:
    _launch_failures.clear()
