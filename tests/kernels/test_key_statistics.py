"""Key-side pass (received mass, FAI, pooled map) against the float64 reference."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
import torch
import triton
import triton.language as tl
from workbench_kernels import api as kernels
from workbench_kernels import configs
from workbench_kernels.key_statistics_pass import _exp2_polynomial
from workbench_kernels.reference import key_statistics_reference
from workbench_kernels.testing import ON_GPU, TOLERANCE, relative_error

f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16


@dataclass(frozen=True)
class Case:
    dtype: torch.dtype
    kv_heads: int
    ratio: int
    q_len: int
    k_len: int
    head_dim: int
    cells: int
    fai: tuple[int, int] | None = (10, 100)
    causal: bool = True
    bias: bool = False
    q_scale: float = 1.0
    blocks: tuple[int, int] | None = None  # key pass (BLOCK_M, BLOCK_N)

    def __str__(self):
        kind = {f32: "fp32", f16: "fp16", bf16: "bf16"}[self.dtype]
        extra = "".join(
            [
                "" if self.causal else "-full",
                "-bias" if self.bias else "",
                f"-blocks{self.blocks[0]}x{self.blocks[1]}" if self.blocks else "",
            ]
        )
        return (
            f"{kind}-kv{self.kv_heads}x{self.ratio}-q{self.q_len}-k{self.k_len}-d{self.head_dim}"
            f"-cells{self.cells}-fai{self.fai}{extra}"
        )


CPU_CASES = [
    Case(f32, 2, 1, 77, 77, 64, cells=8),
    Case(f32, 1, 3, 50, 50, 32, cells=25, fai=(0, 5), bias=True, q_scale=3.0),
    Case(f16, 2, 4, 45, 45, 64, cells=7, fai=(2, 20), q_scale=2.0),
    Case(f32, 1, 3, 20, 83, 64, cells=10),  # Tq < Tk
    Case(f32, 1, 1, 40, 40, 48, cells=6, fai=(-5, 5), causal=False, bias=True),
    Case(f16, 1, 4, 77, 77, 64, cells=5, blocks=(16, 16)),
    Case(f32, 1, 2, 77, 77, 32, cells=3, fai=None, blocks=(16, 32)),
]
GPU_CASES = [
    Case(bf16, 4, 1, 1000, 1000, 128, cells=64),
    Case(bf16, 2, 3, 1531, 1531, 128, cells=7, fai=(0, 50), bias=True, q_scale=2.0),
    Case(bf16, 2, 4, 2077, 2077, 64, cells=64, q_scale=3.0),
    Case(bf16, 2, 4, 333, 2500, 64, cells=16),
    Case(bf16, 2, 3, 700, 700, 128, cells=32, fai=(-20, 20), causal=False, bias=True),
    Case(bf16, 1, 4, 999, 999, 64, cells=256, blocks=(32, 32)),
    Case(f16, 2, 4, 1111, 1111, 128, cells=64),
    Case(f32, 2, 3, 517, 517, 64, cells=64, bias=True),
]
CASES = GPU_CASES if ON_GPU else CPU_CASES


def key_inputs(draw, case: Case):
    """Fresh q, k (k doubles as v), bias, the forward's LSE, and the key pass's options for ``case``."""
    heads = case.kv_heads * case.ratio
    q = draw.normal(1, heads, case.q_len, case.head_dim, dtype=case.dtype, scale=case.q_scale)
    k = draw.normal(1, case.kv_heads, case.k_len, case.head_dim, dtype=case.dtype)
    bias = draw.normal(heads, case.k_len, scale=2.0) if case.bias else None
    scaling = case.head_dim**-0.5
    _, stats = kernels.attention_with_statistics(
        q, k, k, scaling=scaling, causal=case.causal, logit_bias=bias
    )
    options = dict(
        scaling=scaling,
        causal=case.causal,
        logit_bias=bias,
        received=True,
        fai_window=case.fai,
        pooled_cells=case.cells,
    )
    return q, k, stats["lse"], options


@pytest.mark.parametrize("case", CASES, ids=str)
def test_key_statistics_match_reference(case: Case, generator):
    draw = generator
    q, k, lse, options = key_inputs(draw, case)
    heads = q.shape[1]
    override = (
        configs.override("key", BLOCK_M=case.blocks[0], BLOCK_N=case.blocks[1], num_warps=4, num_stages=2)
        if case.blocks
        else contextlib.nullcontext()
    )
    with override:
        result = kernels.key_statistics(q, k, lse, **options)
    reference = key_statistics_reference(q, k, **options)
    expected = {"received", "pooled"} | ({"fai"} if case.fai else set())
    assert set(result) == expected
    cells = min(case.cells, case.k_len)
    assert result["pooled"].shape == (1, heads, cells, cells)
    assert result["received"].shape == (1, heads, case.k_len)
    for name in expected:
        error = relative_error(result[name], reference[name])
        assert error < TOLERANCE[case.dtype], f"{name}: relative error {error:.2e}, {case} seed={draw.seed}"


def test_received_mass_sums_to_the_number_of_rows(generator):
    """Each row's probabilities sum to one, so received mass over all keys sums to Tq."""
    dtype = bf16 if ON_GPU else f32
    n = 33
    q = generator.normal(1, 4, n, 32, dtype=dtype)
    k = generator.normal(1, 2, n, 32, dtype=dtype)
    _, stats = kernels.attention_with_statistics(q, k, k, scaling=0.3)
    with configs.override("key", BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=2):  # one-token cells
        result = kernels.key_statistics(q, k, stats["lse"], scaling=0.3, fai_window=None, pooled_cells=n)
    torch.testing.assert_close(
        result["received"].sum(-1).cpu(), torch.full((1, 4), float(n)), rtol=1e-3, atol=0
    )
    # one-token cells: the pooled map is the probability matrix itself, lower triangular
    assert torch.count_nonzero(torch.triu(result["pooled"], diagonal=1)) == 0
    torch.testing.assert_close(result["pooled"].sum(-1).cpu(), torch.ones(1, 4, n), rtol=1e-3, atol=0)


def test_key_statistics_errors():
    q = torch.zeros(1, 4, 8, 16)
    k = torch.zeros(1, 2, 8, 16)
    with pytest.raises(ValueError, match="lse must be"):
        kernels.key_statistics(q, k, torch.zeros(1, 4, 7), scaling=1.0)
    with pytest.raises(ValueError, match="up to 256"):
        kernels.key_statistics(q, k, torch.zeros(1, 4, 8), scaling=1.0, pooled_cells=300)
    with pytest.raises(ValueError, match="low <= high"):
        kernels.key_statistics(q, k, torch.zeros(1, 4, 8), scaling=1.0, fai_window=(5, 1))


KEY_SWITCHES = [{"EXP_POLY": True}, {"PIPELINE": True}, {"EXP_POLY": True, "PIPELINE": True}]
SWITCH_CASES = (
    [
        Case(bf16, 2, 4, 1531, 1531, 128, cells=64, q_scale=2.0),
        Case(bf16, 2, 3, 333, 2500, 64, cells=16, fai=(0, 50), bias=True),
        Case(f16, 2, 1, 999, 999, 128, cells=7, fai=(-20, 20), causal=False),
    ]
    if ON_GPU
    else [
        Case(f32, 1, 4, 77, 77, 64, cells=8, q_scale=2.0),
        Case(f32, 1, 3, 20, 83, 32, cells=10, fai=(0, 5), bias=True),
        Case(f16, 2, 1, 45, 45, 48, cells=7, fai=(-5, 5), causal=False),
    ]
)


@pytest.mark.parametrize("switches", KEY_SWITCHES, ids=lambda s: "+".join(sorted(s)))
@pytest.mark.parametrize("case", SWITCH_CASES, ids=str)
def test_key_switches_match_reference(case: Case, switches: dict, generator):
    """The polynomial exponentials and the pipelined loop give the default path's statistics."""
    draw = generator
    q, k, lse, options = key_inputs(draw, case)
    tiles = {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 2} if ON_GPU else {
        "BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}  # fmt: skip
    with configs.override("key", **tiles, **switches):
        result = kernels.key_statistics(q, k, lse, **options)
    reference = key_statistics_reference(q, k, **options)
    for name in result:
        error = relative_error(result[name], reference[name])
        assert error < TOLERANCE[case.dtype], f"{name}: {error:.2e}, {case} {switches} seed={draw.seed}"


@triton.jit
def _polynomial_kernel(X, Y, N: tl.constexpr):
    offs = tl.arange(0, N)
    tl.store(Y + offs, _exp2_polynomial(tl.load(X + offs)))


def test_exp2_polynomial_accuracy():
    """The FMA exponential is within 3e-6 of 2^y where it matters and never NaN or negative below -126."""
    device = "cuda" if ON_GPU else "cpu"
    x = torch.cat([torch.linspace(-126.0, 0.0, 2048), -torch.rand(1024) * 4, torch.full((1024,), -1e30)])
    x = x.to(device)
    y = torch.empty_like(x)
    _polynomial_kernel[(1,)](x, y, N=x.numel())
    reference = torch.exp2(x.double())
    close = x > -120
    rel = ((y.double() - reference) / reference).abs()[close].max().item()
    assert rel < 3e-6, rel
    assert torch.isfinite(y).all() and (y >= 0).all() and (y[~close] < 1e-35).all()


def test_narrow_pooled_cells_leave_the_kernel_loop_and_say_so(generator, monkeypatch):
    """Where the kernel would unroll too many cell reductions (narrow cells, short context on the GPU
    tiles), the map comes from the PyTorch definition on the same device, received/FAI still from the
    kernel, and the recorded key-pass path says so."""
    from workbench_kernels import key_statistics_pass

    # the case that hung on an H100 (256 keys, 128 cells, 64 x 128 tiles) leaves; 8k keys in 128 cells stays
    assert key_statistics_pass.pooled_unroll(64, 128, 256, 128) > key_statistics_pass.MAX_POOLED_UNROLL
    assert key_statistics_pass.pooled_unroll(64, 128, 8192, 128) <= key_statistics_pass.MAX_POOLED_UNROLL
    dtype = bf16 if ON_GPU else f32
    q = generator.normal(1, 4, 70, 32, dtype=dtype)
    k = generator.normal(1, 2, 70, 32, dtype=dtype)
    _, stats = kernels.attention_with_statistics(q, k, k, scaling=0.3)
    monkeypatch.setattr(key_statistics_pass, "pooled_in_kernel", lambda *args: False)
    result = kernels.key_statistics(q, k, stats["lse"], scaling=0.3, pooled_cells=35)
    path = kernels.last_key_pass_path()
    reference = key_statistics_reference(q, k, scaling=0.3, pooled_cells=35)
    assert set(result) == set(reference) == {"received", "fai", "pooled"}
    for name in result:
        assert result[name].device == q.device
        assert relative_error(result[name], reference[name]) < TOLERANCE[dtype], name
    if kernels.uses_triton(q):
        assert "pooled map by PyTorch" in path.reason and "cell width 2" in path.reason
