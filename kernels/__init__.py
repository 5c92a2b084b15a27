"""Triton kernels of the attention seam: flash forward with row statistics, key-side statistics,
exact probability tiles, each with a PyTorch reference (``kernels.reference``).

Importing this package does not import Triton; the kernels are compiled on first use (see
``kernels.api``), so ``TRITON_INTERPRET`` can still be set after ``import kernels``.
"""

from kernels.api import (
    KEY_STATISTICS,
    ROW_STATISTICS,
    attention_with_statistics,
    key_statistics,
    probability_tile,
    uses_triton,
)

__all__ = [
    "KEY_STATISTICS",
    "ROW_STATISTICS",
    "attention_with_statistics",
    "key_statistics",
    "probability_tile",
    "uses_triton",
]
