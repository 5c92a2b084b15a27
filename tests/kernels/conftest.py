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

from workbench_kernels.testing import Draw  # noqa: E402


@pytest.fixture
def generator() -> Draw:
    """A fresh draw per test; KERNEL_TEST_SEED=<int> replays one. The seed is in every failure message."""
    seed = int(os.environ.get("KERNEL_TEST_SEED", secrets.randbits(31)))
    return Draw(seed)
