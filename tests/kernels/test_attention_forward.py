"""Flash forward with row statistics against the float64 reference (kernels/reference.py)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import pytest
import torch
from workbench_kernels import api as kernels
from workbench_kernels import configs
from workbench_kernels.reference import attention_reference
from workbench_kernels.testing import DEVICE, ON_GPU, TOLERANCE, logits_at, relative_error

ALL = kernels.ROW_STATISTICS


@dataclass(frozen=True)
class Case:
    dtype: torch.dtype
    batch: int
    kv_heads: int
    ratio: int
    q_len: int
    k_len: int
    head_dim: int
    causal: bool = True
    bias: bool = False
    gate: bool = False
    q_scale: float = 1.0
    sink_tokens: int = 1
    blocks: tuple[int, int] | None = None  # (BLOCK_M, BLOCK_N) override

    def __str__(self):
        kind = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]
        extra = "".join(
            [
                "" if self.causal else "-full",
                "-bias" if self.bias else "",
                "-gate" if self.gate else "",
                f"-blocks{self.blocks[0]}x{self.blocks[1]}" if self.blocks else "",
            ]
        )
        return (
            f"{kind}-b{self.batch}-kv{self.kv_heads}x{self.ratio}-q{self.q_len}-k{self.k_len}"
            f"-d{self.head_dim}{extra}"
        )


f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
CPU_CASES = [
    Case(f32, 1, 2, 1, 77, 77, 64),
    Case(f32, 1, 1, 3, 50, 50, 32, bias=True, gate=True, q_scale=3.0, sink_tokens=4),
    Case(f16, 1, 2, 4, 45, 45, 64, q_scale=2.0),
    Case(f32, 2, 1, 4, 1, 70, 64, bias=True),  # decode: one query after a KV cache
    Case(f32, 1, 1, 3, 20, 83, 128),  # chunked prefill, Tq < Tk
    Case(f32, 1, 1, 1, 40, 40, 48, causal=False, bias=True),  # head dim not a power of two
    Case(f16, 1, 1, 4, 77, 77, 64, q_scale=2.0, sink_tokens=3, blocks=(16, 16)),
]
GPU_CASES = [
    Case(bf16, 1, 4, 1, 1000, 1000, 128),
    Case(bf16, 2, 2, 3, 1531, 1531, 128, bias=True, gate=True, q_scale=2.0, sink_tokens=4),
    Case(bf16, 1, 2, 4, 2077, 2077, 64, q_scale=3.0),
    Case(bf16, 1, 8, 4, 1, 3001, 128),
    Case(bf16, 1, 2, 4, 333, 2500, 64, bias=True),
    Case(bf16, 1, 2, 3, 700, 700, 128, causal=False, bias=True),
    Case(bf16, 1, 1, 4, 900, 900, 96),
    Case(bf16, 1, 2, 4, 777, 777, 64, blocks=(64, 32)),
    Case(f16, 1, 2, 4, 1111, 1111, 128),
    Case(f32, 1, 2, 3, 517, 517, 64, bias=True),
]
CASES = GPU_CASES if ON_GPU else CPU_CASES


def make_inputs(draw, case: Case):
    heads = case.kv_heads * case.ratio
    q = draw.normal(case.batch, heads, case.q_len, case.head_dim, dtype=case.dtype, scale=case.q_scale)
    k = draw.normal(case.batch, case.kv_heads, case.k_len, case.head_dim, dtype=case.dtype)
    v = draw.normal(case.batch, case.kv_heads, case.k_len, case.head_dim, dtype=case.dtype)
    bias = draw.normal(heads, case.k_len, scale=2.0) if case.bias else None
    gate = draw.uniform(heads, low=-1.0, high=2.0) if case.gate else None
    return q, k, v, bias, gate


def forward_options(case: Case, bias, gate) -> dict:
    """Every row statistic, with a span and windows that fit ``case``."""
    span = (case.k_len // 10, max(case.k_len // 10 + 1, (4 * case.k_len) // 10))
    return dict(
        scaling=case.head_dim**-0.5,
        causal=case.causal,
        statistics=ALL,
        sink_tokens=case.sink_tokens,
        local_window=16,
        waad_window=10,
        span=span,
        logit_bias=bias,
        head_gate=gate,
    )


def blocks_override(case: Case):
    if case.blocks is None:
        return contextlib.nullcontext()
    # the small-block cases also take the other argmax path (index search only where the running max rose)
    return configs.override(
        "forward",
        BLOCK_M=case.blocks[0],
        BLOCK_N=case.blocks[1],
        num_warps=4,
        num_stages=2,
        ARGMAX_BRANCH=True,
    )


def check_statistics(case, draw, q, k, bias, stats, ref_stats, names):
    message = f"{case} seed={draw.seed}"
    tolerance = TOLERANCE[case.dtype]
    for name in names:
        assert stats[name].shape == (case.batch, q.shape[1], case.q_len), f"{name} shape, {message}"
        if name == "argmax":
            assert stats[name].dtype == torch.int64
            # Ties and near-ties may pick another key: the chosen key's logit must be the row's maximum.
            chosen = logits_at(q, k, stats[name], scaling=case.head_dim**-0.5, logit_bias=bias)
            best = ref_stats["lse"] + torch.log(ref_stats["max"])
            gap = (best.cpu() - chosen.cpu()).max().item()
            assert gap < 1e-3, f"argmax misses the row maximum by {gap}, {message}"
            continue
        assert stats[name].dtype == torch.float32
        error = relative_error(stats[name], ref_stats[name])
        assert error < tolerance, f"{name}: relative error {error:.2e} >= {tolerance}, {message}"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_reference(case: Case, generator):
    draw = generator
    q, k, v, bias, gate = make_inputs(draw, case)
    options = forward_options(case, bias, gate)
    with blocks_override(case):
        out, stats = kernels.attention_with_statistics(q, k, v, **options)
    ref_out, ref_stats = attention_reference(q, k, v, **options)
    heads = case.kv_heads * case.ratio
    assert out.shape == (case.batch, case.q_len, heads, case.head_dim) and out.dtype == case.dtype
    error = relative_error(out, ref_out)
    assert error < TOLERANCE[case.dtype], f"out: relative error {error:.2e}, {case} seed={draw.seed}"
    assert set(stats) == set(ALL)
    check_statistics(case, draw, q, k, bias, stats, ref_stats, ALL)


@pytest.mark.parametrize("case", CASES[:2], ids=str)
def test_no_statistics_is_plain_attention(case: Case, generator):
    """With nothing requested only lse comes back, and the output is still exact."""
    q, k, v, bias, gate = make_inputs(generator, case)
    options = dict(scaling=case.head_dim**-0.5, causal=case.causal, logit_bias=bias, head_gate=gate)
    out, stats = kernels.attention_with_statistics(q, k, v, **options)
    ref_out, ref_stats = attention_reference(q, k, v, **options)
    assert set(stats) == {"lse"}
    assert relative_error(out, ref_out) < TOLERANCE[case.dtype], f"seed={generator.seed}"
    assert relative_error(stats["lse"], ref_stats["lse"]) < TOLERANCE[case.dtype], f"seed={generator.seed}"


def test_head_gate_changes_only_its_head(generator):
    """A gate scales its head's output and nothing else: other heads and all statistics stay put."""
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    case = Case(dtype, 1, 1, 4, 37, 37, 64)
    q, k, v, _, _ = make_inputs(generator, case)
    gate = torch.ones(4, device=DEVICE)
    gate[2] = 0.0
    gate[1] = -0.5
    stats_names = ("entropy", "max", "waad")
    plain, plain_stats = kernels.attention_with_statistics(q, k, v, scaling=0.125, statistics=stats_names)
    gated, gated_stats = kernels.attention_with_statistics(
        q, k, v, scaling=0.125, statistics=stats_names, head_gate=gate
    )
    assert torch.equal(gated[:, :, [0, 3]], plain[:, :, [0, 3]])
    assert torch.count_nonzero(gated[:, :, 2]) == 0
    torch.testing.assert_close(gated[:, :, 1].float(), -0.5 * plain[:, :, 1].float(), rtol=1e-2, atol=1e-3)
    for name in ("lse",) + stats_names:
        assert torch.equal(gated_stats[name], plain_stats[name]), name


def test_logit_bias_minus_infinity_removes_a_key(generator):
    """A -inf bias on key 0 of one head takes all its mass away (sink mass 0) and leaves other heads alone."""
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    case = Case(dtype, 1, 1, 3, 41, 41, 32)
    q, k, v, _, _ = make_inputs(generator, case)
    bias = torch.zeros(3, 41, device=DEVICE)
    bias[1, 0] = float("-inf")
    names = ("sink_mass", "entropy")
    q = q[:, :, 1:]  # queries at positions 1..40 all see key 1 as well, so no row is left empty
    _, plain = kernels.attention_with_statistics(q, k, v, scaling=0.2, statistics=names)
    _, biased = kernels.attention_with_statistics(q, k, v, scaling=0.2, statistics=names, logit_bias=bias)
    # heads without bias keep their values (up to the rounding of adding a zero bias instead of one FMA)
    torch.testing.assert_close(
        biased["sink_mass"][:, [0, 2]], plain["sink_mass"][:, [0, 2]], rtol=1e-5, atol=1e-7
    )
    assert biased["sink_mass"][:, 1].abs().max().item() == 0.0
    assert (plain["sink_mass"][:, 1] > 0).all()
    assert torch.isfinite(biased["entropy"]).all()


def test_errors_name_the_fix():
    q = torch.zeros(1, 6, 8, 16)
    k = torch.zeros(1, 4, 8, 16)
    with pytest.raises(ValueError, match="multiple of 4 KV heads"):
        kernels.attention_with_statistics(q, k, k, scaling=1.0)
    with pytest.raises(ValueError, match="choose from"):
        kernels.attention_with_statistics(q[:, :4], k, k, scaling=1.0, statistics=("entropie",))
    with pytest.raises(ValueError, match="span="):
        kernels.attention_with_statistics(q[:, :4], k, k, scaling=1.0, statistics=("span_mass",))
    with pytest.raises(ValueError, match="Tq must be <= Tk"):
        kernels.attention_with_statistics(q[:, :4], k[:, :, :4], k[:, :, :4], scaling=1.0)
    with pytest.raises(ValueError, match=r"\(H, Tk\)"):
        kernels.attention_with_statistics(q[:, :4], k, k, scaling=1.0, logit_bias=torch.zeros(4, 7))


def test_max_is_exp_of_max_logit(generator):
    """max p = 1 / l comes for free; check it against its definition on a peaked input."""
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    case = Case(dtype, 1, 1, 1, 33, 33, 32, q_scale=6.0)
    q, k, v, _, _ = make_inputs(generator, case)
    _, stats = kernels.attention_with_statistics(q, k, v, scaling=32**-0.5, statistics=("max", "argmax"))
    chosen = logits_at(q, k, stats["argmax"], scaling=32**-0.5)
    expected = torch.exp(chosen.to(stats["lse"].device) - stats["lse"].double())
    assert relative_error(stats["max"], expected) < 1e-4 * (10 if dtype != torch.float32 else 1) + 1e-5
    assert math.isclose(stats["max"][0, 0, 0].item(), 1.0, rel_tol=1e-6)  # the first row sees one key


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs CUDA: bf16 is wrong in the Triton CPU interpreter")
def test_bf16_long_context_capture_on_gpu(generator):
    """8k tokens in bf16: forward statistics and key-side statistics against float64, GQA 4:1, d=128."""
    from workbench_kernels.reference import key_statistics_reference

    case = Case(torch.bfloat16, 1, 1, 4, 8191, 8191, 128, q_scale=2.0, sink_tokens=4)
    q, k, v, _, _ = make_inputs(generator, case)
    scaling = 128**-0.5
    options = dict(scaling=scaling, statistics=ALL, sink_tokens=4, span=(1000, 3000))
    out, stats = kernels.attention_with_statistics(q, k, v, **options)
    ref_out, ref_stats = attention_reference(q, k, v, **options, chunk=512)
    assert relative_error(out, ref_out) < 1e-2, f"seed={generator.seed}"
    check_statistics(case, generator, q, k, None, stats, ref_stats, ALL)
    keyed = kernels.key_statistics(q, k, stats["lse"], scaling=scaling, pooled_cells=64)
    ref_keyed = key_statistics_reference(q, k, scaling=scaling, pooled_cells=64, chunk=512)
    for name in ("received", "fai", "pooled"):
        error = relative_error(keyed[name], ref_keyed[name])
        assert error < 1e-2, f"{name}: relative error {error:.2e}, seed={generator.seed}"


# Speed switches (kernels/configs.py): each must compute the same statistics as the default path.
FORWARD_SWITCHES = [
    {"ARGMAX_PACKED": True},
    {"DISTANCE_MMA": True},
    {"ARGMAX_PACKED": True, "DISTANCE_MMA": True},
]
SWITCH_CASES = (
    [  # GQA 4 / 1 / 3, lengths that are not multiples of the block, Tq < Tk, bias (rows of negative logits)
        Case(bf16, 1, 2, 4, 1531, 1531, 128, q_scale=2.0, sink_tokens=4),
        Case(bf16, 1, 2, 1, 777, 999, 64, bias=True),
        Case(f16, 1, 1, 3, 1000, 1000, 128, bias=True, gate=True),
    ]
    if ON_GPU
    else [
        Case(f32, 1, 1, 4, 77, 77, 64, q_scale=3.0, sink_tokens=4),
        Case(f32, 1, 2, 1, 40, 61, 32, bias=True),
        Case(f16, 1, 1, 3, 50, 50, 48, bias=True, gate=True),
    ]
)


@pytest.mark.parametrize("switches", FORWARD_SWITCHES, ids=lambda s: "+".join(sorted(s)))
@pytest.mark.parametrize("case", SWITCH_CASES, ids=str)
def test_forward_switches_match_reference(case: Case, switches: dict, generator):
    draw = generator
    q, k, v, bias, gate = make_inputs(draw, case)
    options = forward_options(case, bias, gate)
    tiles = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2} if ON_GPU else {
        "BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}  # fmt: skip
    with configs.override("forward", **tiles, **switches):
        out, stats = kernels.attention_with_statistics(q, k, v, **options)
    ref_out, ref_stats = attention_reference(q, k, v, **options)
    error = relative_error(out, ref_out)
    assert error < TOLERANCE[case.dtype], (
        f"out: relative error {error:.2e}, {case} {switches} seed={draw.seed}"
    )
    check_statistics(case, draw, q, k, bias, stats, ref_stats, ALL)


# Round 4 (fewer ALU operations per score): ROWSUM_MMA alone and on top of the shipped switches, causal and
# full attention, with and without a bias (the full cases take the distance sums over keys after the query).
ROWSUM_SWITCHES = [
    {"ROWSUM_MMA": True},
    {"ARGMAX_PACKED": True, "ROWSUM_MMA": True},
]
ROWSUM_CASES = (
    [
        Case(bf16, 1, 2, 4, 1531, 1531, 128, q_scale=2.0, sink_tokens=4),
        Case(bf16, 1, 2, 1, 777, 999, 64, causal=False, bias=True),
        Case(f16, 1, 1, 3, 1000, 1000, 128, causal=False, gate=True),
    ]
    if ON_GPU
    else [
        Case(f32, 1, 1, 4, 77, 77, 64, q_scale=3.0, sink_tokens=4),
        Case(f32, 1, 2, 1, 40, 61, 32, causal=False, bias=True),
        Case(f16, 1, 1, 3, 50, 50, 48, bias=True, gate=True),
        Case(f32, 1, 1, 2, 45, 70, 32, causal=False),
    ]
)


@pytest.mark.parametrize("switches", ROWSUM_SWITCHES, ids=lambda s: "+".join(sorted(s)))
@pytest.mark.parametrize("case", ROWSUM_CASES, ids=str)
def test_rowsum_mma_matches_reference(case: Case, switches: dict, generator):
    test_forward_switches_match_reference(case, switches, generator)


def test_switches_reject_unknown_names():
    with pytest.raises(ValueError, match="choose from"):
        with configs.switches("forward", ARGMAX_PACKD=True):
            pass
    with configs.switches("key", EXP_POLY=True):
        assert configs.key_config(64, torch.float32, torch.device("cpu"))["EXP_POLY"] is True
    assert "EXP_POLY" not in configs.key_config(64, torch.float32, torch.device("cpu"))
