"""Tile shapes, warps and pipeline depths for the attention kernels.

One place to read and change them. ``override`` lets the benchmark try other shapes without editing
this file. (The optional Gluon key pass keeps its tiles in ``key_pass_selection.gluon_launch_config``,
which imports without torch so that benchmarks/gluon_compile_check.py runs in a bare Triton venv.) Values on the GPU were picked on an H100 (see benchmarks/NOTES.md); under the CPU
interpreter small tiles keep the numpy work per program low.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_OVERRIDES: dict[str, dict[str, int]] = {}
_SWITCHES: dict[str, dict[str, bool]] = {}
_GENERATION = [0]


def generation() -> int:
    """Bumped whenever ``override`` or ``switches`` changes a config: launchers that cache launch
    metadata per call shape put it in their cache key."""
    return _GENERATION[0]


def _changed() -> None:
    _GENERATION[0] += 1


# Compile-time speed switches (all exact; see benchmarks/NOTES.md for their measured effect):
#   forward: ARGMAX_PACKED (argmax index packed into the low mantissa bits of the running max),
#            DISTANCE_MMA (mean-distance sums as a [BLOCK_N, 16] tensor-core product), ARGMAX_BRANCH,
#            ROWSUM_MMA (round 4, unmeasured: row sum + absolute key-position sums in one [BLOCK_N, 16]
#            product, entropy as lse - E_p[s]; removes the per-score row-sum add and distance FMA)
#   key:     EXP_POLY (half of the exponentials as an FMA polynomial), PIPELINE (next q.k issued
#            before this block's exponentials), QUERY_SPLIT (an int, 1 = off, 2 or 4: each key block's
#            query blocks split over that many programs, partial sums added into zeroed outputs; for
#            short T, where key blocks x heads do not fill the SMs; deterministic with 2; unmeasured)
SWITCHES = {
    "forward": ("ARGMAX_PACKED", "DISTANCE_MMA", "ARGMAX_BRANCH", "ROWSUM_MMA"),
    "key": ("EXP_POLY", "PIPELINE", "QUERY_SPLIT"),
}


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def block_d(head_dim: int) -> int:
    return max(16, _next_power_of_two(head_dim))


def forward_config(head_dim: int, dtype: torch.dtype, device: torch.device, with_statistics: bool) -> dict:
    """Config of the flash forward: BLOCK_M queries x BLOCK_N keys per step."""
    config = _forward_tiles(head_dim, dtype, device, with_statistics)
    return {**config, **_SWITCHES.get("forward", {})} if with_statistics else config


def _forward_tiles(head_dim: int, dtype: torch.dtype, device: torch.device, with_statistics: bool) -> dict:
    if "forward" in _OVERRIDES:
        return dict(_OVERRIDES["forward"])
    if device.type != "cuda":
        return {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}
    if dtype == torch.float32:  # exact fp32 dots run on the FMA units: small tiles, no tensor cores
        return {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
    d = block_d(head_dim)
    if with_statistics and d <= 128:
        # Measured on the H100 (benchmarks/NOTES.md): with every statistic on, 128-row tiles run out of
        # registers (255 per thread plus spills); 64 x 64 with 4 warps was fastest for d = 64 and d = 128.
        # Run 3 (H200): the packed argmax was the fastest exact forward at every length, 10-13 % under
        # the pair reduction from 16k to 128k (kernel_sweep_detail.json).
        return {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3, "ARGMAX_PACKED": True}
    if d <= 64:
        return {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3}
    if d <= 128:
        return {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3}
    return {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}


def key_config(head_dim: int, dtype: torch.dtype, device: torch.device) -> dict:
    """Config of the key-side pass: BLOCK_N keys per program, BLOCK_M queries per step."""
    return {**_key_tiles(head_dim, dtype, device), **_SWITCHES.get("key", {})}


def _key_tiles(head_dim: int, dtype: torch.dtype, device: torch.device) -> dict:
    if "key" in _OVERRIDES:
        return dict(_OVERRIDES["key"])
    if device.type != "cuda":
        return {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}
    if dtype == torch.float32:
        return {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
    d = block_d(head_dim)
    if d <= 64:  # H100: 7.7 ms at 32k against 9.0 with 8 warps
        return {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 3}
    if d <= 128:  # H100 at 16k: 3.06 ms; 8 warps 3 stages 3.14; BLOCK_N 256 4.07
        return {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 4}
    return {"BLOCK_M": 32, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2}


def tile_config(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> dict:
    if "tile" in _OVERRIDES:
        return dict(_OVERRIDES["tile"])
    if device.type != "cuda" or dtype == torch.float32:
        return {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}
    return {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2}


@contextlib.contextmanager
def override(kernel: str, **config: int) -> Iterator[None]:
    """Use ``config`` for ``kernel`` ("forward", "key" or "tile") inside the block (tests, tuning)."""
    if kernel not in ("forward", "key", "tile"):
        raise ValueError(f"unknown kernel {kernel!r}; choose 'forward', 'key' or 'tile'")
    previous = _OVERRIDES.get(kernel)
    _OVERRIDES[kernel] = dict(config)
    _changed()
    try:
        yield
    finally:
        if previous is None:
            _OVERRIDES.pop(kernel, None)
        else:
            _OVERRIDES[kernel] = previous
        _changed()


@contextlib.contextmanager
def switches(kernel: str, **flags: bool | int) -> Iterator[None]:
    """Turn speed switches on for ``kernel`` ("forward" or "key") on top of whatever tiles it picks
    (the model benchmark uses this: its head dim has its own tiles)."""
    if kernel not in SWITCHES:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {sorted(SWITCHES)}")
    unknown = sorted(set(flags) - set(SWITCHES[kernel]))
    if unknown:
        raise ValueError(f"unknown {kernel} switches {unknown}; choose from {SWITCHES[kernel]}")
    previous = _SWITCHES.get(kernel)
    _SWITCHES[kernel] = {**(previous or {}), **flags}
    _changed()
    try:
        yield
    finally:
        if previous is None:
            _SWITCHES.pop(kernel, None)
        else:
            _SWITCHES[kernel] = previous
        _changed()
