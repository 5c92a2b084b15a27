"""Exact probability tiles recomputed from Q, K and the saved lse, against the float64 reference."""

from __future__ import annotations

import pytest
import torch
from workbench_kernels import api as kernels
from workbench_kernels.reference import probability_tile_reference
from workbench_kernels.testing import ON_GPU, TOLERANCE, relative_error

f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
# dtype, kv heads, ratio, Tq, Tk, head dim, causal, bias, head, query range, key range
CPU_CASES = [
    (f32, 1, 3, 70, 70, 64, True, False, 2, (5, 70), (0, 70)),
    (f16, 2, 4, 45, 45, 32, True, True, 7, (40, 41), (0, 45)),
    (f32, 1, 1, 30, 90, 48, True, False, 0, (3, 29), (50, 90)),
    (f32, 1, 4, 33, 33, 64, False, True, 1, (0, 33), (7, 20)),
]
GPU_CASES = [
    (bf16, 2, 4, 3000, 3000, 128, True, False, 5, (1000, 1300), (0, 1300)),
    (bf16, 2, 3, 777, 777, 64, True, True, 4, (776, 777), (0, 777)),
    (bf16, 1, 1, 300, 2048, 128, True, False, 0, (0, 300), (1700, 2048)),
    (f16, 2, 4, 500, 500, 64, False, True, 3, (17, 99), (250, 499)),
    (f32, 2, 3, 400, 400, 64, True, False, 2, (100, 400), (0, 400)),
]
CASES = GPU_CASES if ON_GPU else CPU_CASES


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c[0]}-kv{c[1]}x{c[2]}-q{c[3]}-k{c[4]}-h{c[8]}-{c[9]}-{c[10]}"
)
def test_probability_tile_matches_reference(case, generator):
    dtype, kv_heads, ratio, q_len, k_len, head_dim, causal, has_bias, head, query_range, key_range = case
    heads = kv_heads * ratio
    q = generator.normal(2, heads, q_len, head_dim, dtype=dtype, scale=2.0)
    k = generator.normal(2, kv_heads, k_len, head_dim, dtype=dtype)
    bias = generator.normal(heads, k_len) if has_bias else None
    scaling = head_dim**-0.5
    _, stats = kernels.attention_with_statistics(q, k, k, scaling=scaling, causal=causal, logit_bias=bias)
    options = dict(
        scaling=scaling,
        head=head,
        query_range=query_range,
        key_range=key_range,
        causal=causal,
        logit_bias=bias,
    )
    tile = kernels.probability_tile(q, k, stats["lse"], **options)
    reference = probability_tile_reference(q, k, **options)
    assert tile.shape == (2, query_range[1] - query_range[0], key_range[1] - key_range[0])
    assert tile.dtype == torch.float32
    error = relative_error(tile, reference)
    assert error < TOLERANCE[dtype], f"relative error {error:.2e}, {case} seed={generator.seed}"
    if causal:
        rows = torch.arange(*query_range)[:, None] + (k_len - q_len)
        above = torch.arange(*key_range)[None, :] > rows
        assert torch.count_nonzero(tile.cpu()[:, above]) == 0


def test_tile_errors_name_the_shape():
    q = torch.zeros(1, 4, 8, 16)
    k = torch.zeros(1, 2, 8, 16)
    lse = torch.zeros(1, 4, 8)
    with pytest.raises(ValueError, match="4 heads"):
        kernels.probability_tile(q, k, lse, scaling=1.0, head=4, query_range=(0, 1), key_range=(0, 1))
    with pytest.raises(ValueError, match="must lie in"):
        kernels.probability_tile(q, k, lse, scaling=1.0, head=0, query_range=(0, 9), key_range=(0, 1))
