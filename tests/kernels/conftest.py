"""Kernel tests: on a machine without CUDA the Triton kernels run under the CPU interpreter.

TRITON_INTERPRET must be set before any ``@triton.jit`` decorator runs; ``kernels`` imports Triton
lazily, so setting it here, when pytest imports this conftest, is early enough.
"""

from __future__ import annotations

import os
import secrets

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")


class Draw:
    """Random inputs from one seed; ``seed`` goes into failure messages so a failure can be replayed."""

    def __init__(self, seed: int):
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def normal(self, *shape, dtype=torch.float32, scale=1.0):
        x = torch.randn(*shape, generator=self.generator, dtype=torch.float32) * scale
        return x.to(device=DEVICE, dtype=dtype)

    def uniform(self, *shape, low=0.0, high=1.0):
        x = torch.rand(*shape, generator=self.generator) * (high - low) + low
        return x.to(DEVICE)


@pytest.fixture
def generator():
    """A fresh draw per test; KERNEL_TEST_SEED=<int> replays one. The seed is in every failure message."""
    seed = int(os.environ.get("KERNEL_TEST_SEED", secrets.randbits(31)))
    return Draw(seed)
