"""The Gluon Hopper key pass (kernels/gluon_key_pass.py) against the float64 reference: sm_90 only.

Skipped, with the chain's reason, wherever ``key_pass_selection`` would not run it (no GPU, not sm_90,
another Triton, Gluon missing). Both consumer schedules (plain and ping-pong) are checked, and the api
path with the Gluon key pass asked for must record that it ran.
"""

from __future__ import annotations

import pytest
import torch
from workbench_kernels import api as kernels
from workbench_kernels import key_pass_selection as selection
from workbench_kernels.reference import key_statistics_reference
from workbench_kernels.testing import ON_GPU, TOLERANCE, relative_error


def _unavailable() -> str | None:
    if not ON_GPU:
        return "needs CUDA"
    return selection.gluon_unavailable(torch.device("cuda"))


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))]

bf16, f16 = torch.bfloat16, torch.float16
# (dtype, kv heads, GQA ratio, Tq, Tk, head dim, causal, bias, fai window): lengths off the 64 / 128 grid,
# Tq < Tk, one block, full attention.
CASES = [
    (bf16, 2, 4, 1000, 1000, 128, True, False, (10, 100)),
    (bf16, 1, 3, 1531, 1531, 128, True, True, (0, 50)),
    (f16, 2, 2, 777, 777, 64, True, False, (10, 100)),
    (bf16, 1, 4, 333, 2500, 128, True, False, (10, 100)),
    (bf16, 2, 1, 700, 700, 128, False, True, (-20, 20)),
    (bf16, 1, 2, 100, 100, 64, True, False, None),
    (bf16, 1, 1, 1, 65, 128, True, False, (0, 5)),
]


def _inputs(case, seed=0):
    dtype, kv_heads, ratio, q_len, k_len, head_dim, causal, bias, fai = case
    gen = torch.Generator().manual_seed(seed)
    heads = kv_heads * ratio
    q = (torch.randn(1, heads, q_len, head_dim, generator=gen) * 2.0).to("cuda", dtype)
    k = torch.randn(1, kv_heads, k_len, head_dim, generator=gen).to("cuda", dtype)
    logit_bias = (torch.randn(heads, k_len, generator=gen) * 2.0).cuda() if bias else None
    scaling = head_dim**-0.5
    _, stats = kernels.attention_with_statistics(
        q, k, k, scaling=scaling, causal=causal, logit_bias=logit_bias
    )
    options = dict(scaling=scaling, causal=causal, logit_bias=logit_bias, received=True, fai_window=fai)
    return q, k, stats["lse"], options


@pytest.mark.parametrize("pingpong", [False, True], ids=["plain", "pingpong"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}-q{c[3]}-k{c[4]}-d{c[5]}")
def test_gluon_key_pass_matches_reference(case, pingpong):
    from workbench_kernels.gluon_key_pass import gluon_key_statistics_launch

    q, k, lse, options = _inputs(case)
    result = gluon_key_statistics_launch(q, k, lse, **options, pingpong=pingpong)
    torch.cuda.synchronize()
    reference = key_statistics_reference(q, k, **options, chunk=512)
    for name in reference:
        error = relative_error(result[name], reference[name])
        assert error < TOLERANCE[q.dtype], f"{name}: relative error {error:.2e}"


def test_api_runs_and_records_gluon_when_asked():
    q, k, lse, options = _inputs(CASES[0], seed=1)
    with selection.preference("gluon"):
        result = kernels.key_statistics(q, k, lse, **options)
    path = kernels.last_key_pass_path()
    assert path.name == selection.GLUON, path.reason
    reference = key_statistics_reference(q, k, **options, chunk=512)
    assert relative_error(result["received"], reference["received"]) < TOLERANCE[q.dtype]
    with selection.preference("gluon"):  # the pooled map is Triton's: the record says so
        kernels.key_statistics(q, k, lse, **options, pooled_cells=64)
    assert kernels.last_key_pass_path().name == selection.TRITON
    assert "pooled map" in kernels.last_key_pass_path().reason
