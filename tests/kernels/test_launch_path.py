"""The launch path of each pass: one kernel launch, no allocation beyond the outputs, no host sync,
capture-able in a CUDA graph (kernels round 4, short context).

On the CPU the kernels are replaced by recording stubs and every PyTorch op the launcher dispatches is
logged (``TorchDispatchMode``): a pre- or post-processing kernel (clamp, division, memset, copy) shows up
as an op, and a host sync (``.item()``, ``bool(tensor)``, ``nonzero``) as ``_local_scalar_dense`` /
``nonzero``, the ops that block on a CUDA tensor. The GPU test captures each pass in a CUDA graph and
checks that replays on new inputs equal eager calls.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from workbench_kernels import api as kernels
from workbench_kernels import attention_forward as forward_module
from workbench_kernels import configs
from workbench_kernels import key_statistics_pass as key_module
from workbench_kernels import probability_tiles as tile_module
from workbench_kernels.reference import key_statistics_reference
from workbench_kernels.testing import ON_GPU, TOLERANCE, relative_error

# Ops a launcher may dispatch: output allocations and views of them.
ALLOCATIONS = {"aten.empty.memory_format", "aten.empty_strided.default"}
VIEWS = {"aten.unbind.int", "aten.select.int", "aten.alias.default", "aten.view.default"}
ZEROED = "aten.zeros.default"  # an output allocated zero-filled: one memset launch on the GPU
SYNCS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.item.default"}


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


class _Stub:
    """Stands in for a ``@triton.jit`` kernel: records each launch (grid, args) instead of running it."""

    def __init__(self, launches: list, name: str):
        self.launches, self.name = launches, name

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append((self.name, grid, args, kwargs))

        return launch


@contextlib.contextmanager
def recorded(monkeypatch):
    """Launches (stubbed kernels) and dispatched ops of the api calls inside the block."""
    launches: list = []
    for module, name in (
        (forward_module, "attention_forward_kernel"),
        (key_module, "key_statistics_kernel"),
        (key_module, "pooled_mean_kernel"),
        (tile_module, "probability_tile_kernel"),
    ):
        monkeypatch.setattr(module, name, _Stub(launches, name))
    log = _OpLog()
    with log:
        yield launches, log.ops


def _inputs(q_len=96, k_len=96, heads=4, kv_heads=2, head_dim=32):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, heads, q_len, head_dim, generator=gen)
    k = torch.randn(1, kv_heads, k_len, head_dim, generator=gen)
    v = torch.randn(1, kv_heads, k_len, head_dim, generator=gen)
    bias = torch.randn(k_len, heads, generator=gen).to(torch.float16).t()  # not fp32, not contiguous
    gate = torch.rand(heads, generator=gen).to(torch.float16)
    lse = torch.randn(1, heads, q_len, generator=gen)
    return q, k, v, bias, gate, lse


def _computing_ops(ops: list[str]) -> list[str]:
    return [op for op in ops if op not in ALLOCATIONS and op not in VIEWS]


@pytest.mark.skipif(ON_GPU, reason="CPU launch-path check (stubbed kernels); the GPU test captures graphs")
@pytest.mark.parametrize("with_bias", [False, True], ids=["plain", "bias+gate"])
def test_forward_is_one_launch_and_allocates_only_outputs(monkeypatch, with_bias):
    q, k, v, bias, gate, _ = _inputs()
    extra = dict(logit_bias=bias, head_gate=gate) if with_bias else {}
    with recorded(monkeypatch) as (launches, ops):
        out, stats = kernels.attention_with_statistics(
            q, k, v, scaling=0.2, statistics=kernels.ROW_STATISTICS, span=(10, 40), **extra
        )
    assert [name for name, *_ in launches] == ["attention_forward_kernel"]
    assert not set(ops) & SYNCS, ops
    assert _computing_ops(ops) == [], f"work besides the kernel: {_computing_ops(ops)}"
    # out, one buffer for the eight fp32 statistics, argmax
    assert sum(op in ALLOCATIONS for op in ops) == 3, ops
    assert set(stats) == set(kernels.ROW_STATISTICS)
    if with_bias:  # passed through as is: the kernel converts, clamps and scales it
        args = launches[0][2]
        assert args[4] is bias and args[5] is gate


@pytest.mark.skipif(ON_GPU, reason="CPU launch-path check (stubbed kernels); the GPU test captures graphs")
@pytest.mark.parametrize(
    "k_len, cells, launches_expected",
    [
        (96, 48, ["key_statistics_kernel"]),  # cell 2 divides BLOCK_N: the kernel writes the whole map
        (96, 0, ["key_statistics_kernel"]),
        (90, 9, ["key_statistics_kernel", "pooled_mean_kernel"]),  # cell 10: zero-fill, kernel, mean
    ],
)
def test_key_pass_launches_and_allocations(monkeypatch, k_len, cells, launches_expected):
    q, k, _, bias, _, lse = _inputs(q_len=k_len, k_len=k_len)
    with configs.override("key", BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1):
        with recorded(monkeypatch) as (launches, ops):
            result = kernels.key_statistics(
                q, k, lse, scaling=0.2, logit_bias=bias, fai_window=(2, 9), pooled_cells=cells
            )
    assert [name for name, *_ in launches] == launches_expected
    assert not set(ops) & SYNCS, ops
    outputs = 3 if cells else 2  # received, fai (, pooled)
    assert sum(op in ALLOCATIONS or op == ZEROED for op in ops) == outputs, ops
    computing = _computing_ops(ops)
    if len(launches_expected) == 1:
        assert computing == [], f"work besides the kernel: {computing}"
    else:  # the one exception: a map several programs add into starts from zeros (a memset)
        assert computing == [ZEROED], computing
    assert set(result) == {"received", "fai"} | ({"pooled"} if cells else set())


@pytest.mark.skipif(ON_GPU, reason="CPU launch-path check (stubbed kernels); the GPU test captures graphs")
def test_launch_metadata_is_cached_and_follows_config_changes(monkeypatch):
    q, k, _, _, _, lse = _inputs()
    with recorded(monkeypatch) as (launches, _):
        for _ in range(2):
            kernels.key_statistics(q, k, lse, scaling=0.2, pooled_cells=8)
        with configs.override("key", BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=1):
            kernels.key_statistics(q, k, lse, scaling=0.2, pooled_cells=8)
        kernels.key_statistics(q, k, lse, scaling=0.2, pooled_cells=8)
    launches = [launch for launch in launches if launch[0] == "key_statistics_kernel"]
    grids = [grid for _, grid, *_ in launches]
    assert grids[0] is grids[1], "the second call should reuse the cached grid"
    assert grids[2] != grids[0] and grids[3] == grids[0]
    assert launches[2][3]["BLOCK_N"] == 16 and launches[3][3]["BLOCK_N"] == 32


@pytest.mark.skipif(ON_GPU, reason="CPU launch-path check (stubbed kernels)")
def test_tile_is_one_launch_without_bias_copies(monkeypatch):
    q, k, _, bias, _, lse = _inputs()
    with recorded(monkeypatch) as (launches, ops):
        kernels.probability_tile(
            q, k, lse, scaling=0.2, head=3, query_range=(5, 60), key_range=(0, 50), logit_bias=bias
        )
    assert [name for name, *_ in launches] == ["probability_tile_kernel"]
    assert not set(ops) & SYNCS
    assert _computing_ops(ops) == [], _computing_ops(ops)


def test_the_op_log_sees_syncs_and_copies():
    """The detector itself: a host sync and a pre-processing kernel are caught."""
    x = torch.randn(4)
    with _OpLog() as log:
        (x.clamp(min=0) * 2).sum().item()
    assert set(log.ops) & SYNCS and "aten.clamp.default" in log.ops


@pytest.mark.skipif(ON_GPU, reason="CPU interpreter case; the GPU case runs in test_graph_capture_replays")
@pytest.mark.parametrize("split", [2, 4])
@pytest.mark.parametrize(
    "causal, q_len, k_len, cells, fai, with_bias",
    [
        (True, 77, 77, 8, (10, 100), False),
        (True, 20, 83, 10, (0, 5), True),
        (False, 45, 45, 7, (-5, 5), True),
    ],
    ids=["causal", "tq<tk-bias", "full-bias"],
)
def test_key_query_split_matches_reference(generator, split, causal, q_len, k_len, cells, fai, with_bias):
    """QUERY_SPLIT (off by default): the parts' sums added into zeros give the reference statistics."""
    q = generator.normal(1, 4, q_len, 32, scale=2.0)
    k = generator.normal(1, 2, k_len, 32)
    bias = generator.normal(4, k_len, scale=2.0) if with_bias else None
    options = dict(scaling=32**-0.5, causal=causal, logit_bias=bias, fai_window=fai, pooled_cells=cells)
    _, stats = kernels.attention_with_statistics(q, k, k, scaling=32**-0.5, causal=causal, logit_bias=bias)
    tiles = dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1)
    with configs.override("key", **tiles, QUERY_SPLIT=split):
        result = kernels.key_statistics(q, k, stats["lse"], **options)
    with configs.override("key", **tiles):
        unsplit = kernels.key_statistics(q, k, stats["lse"], **options)
    reference = key_statistics_reference(q, k, **options)
    assert set(result) == set(reference) == set(unsplit)
    for name in result:
        error = relative_error(result[name], reference[name])
        assert error < TOLERANCE[torch.float32], f"{name}: {error:.2e} seed={generator.seed}"
        assert relative_error(result[name], unsplit[name]) < 1e-6, name


@pytest.mark.skipif(ON_GPU, reason="CPU interpreter case")
def test_owned_pooled_map_writes_every_cell(monkeypatch, generator):
    """With no zero-filled map the kernel must store every cell itself: outputs start as NaN here."""
    real_empty = torch.empty

    def nan_empty(*args, **kwargs):
        return real_empty(*args, **kwargs).fill_(float("nan"))

    q = generator.normal(1, 2, 30, 32)
    k = generator.normal(1, 1, 100, 32)
    _, stats = kernels.attention_with_statistics(q, k, k, scaling=0.3)
    options = dict(scaling=0.3, fai_window=None, pooled_cells=64)  # cell 2: 50 used cells of 64, Tq < Tk
    monkeypatch.setattr(torch, "empty", nan_empty)
    with configs.override("key", BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1):
        result = kernels.key_statistics(q, k, stats["lse"], **options)
    monkeypatch.undo()
    reference = key_statistics_reference(q, k, **options)
    assert torch.isfinite(result["pooled"]).all()
    assert relative_error(result["pooled"], reference["pooled"]) < TOLERANCE[torch.float32]
    assert torch.equal(result["pooled"][..., 50:], torch.zeros_like(result["pooled"][..., 50:]))


def _graph_case(fn, refresh):
    """Capture ``fn`` in a CUDA graph, give the inputs new values, replay; returns (replayed, eager)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # compile and warm up outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = fn()
    refresh()
    graph.replay()
    torch.cuda.synchronize()
    return captured, fn()


def _flatten(result) -> dict:
    if isinstance(result, torch.Tensor):
        return {"tensor": result}
    if isinstance(result, tuple):
        return {"out": result[0], **result[1]}
    return dict(result)


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs CUDA")
@pytest.mark.parametrize("length", [1000, 3000, 4096])
@pytest.mark.parametrize("split", [1, 2])
def test_graph_capture_replays(length, split):
    """Each pass captured in a CUDA graph: a replay on new inputs equals the eager call bit for bit
    (4096 and 1000: one launch per key pass; 3000: cell 47, the zero-fill + mean path)."""
    gen = torch.Generator(device="cpu").manual_seed(length)
    heads, kv_heads, head_dim = 32, 8, 128

    def fresh(*shape):
        return torch.randn(*shape, generator=gen).to(device="cuda", dtype=torch.bfloat16)

    q, k, v = (
        fresh(1, heads, length, head_dim),
        fresh(1, kv_heads, length, head_dim),
        fresh(1, kv_heads, length, head_dim),
    )
    bias = torch.randn(heads, length, generator=gen).cuda()
    scaling = head_dim**-0.5
    lse = kernels.attention_with_statistics(q, k, v, scaling=scaling)[1]["lse"].clone()

    def refresh():
        for tensor in (q, k, v):
            tensor.copy_(fresh(*tensor.shape))
        bias.copy_(torch.randn(heads, length, generator=gen))
        lse.copy_(kernels.attention_with_statistics(q, k, v, scaling=scaling)[1]["lse"])

    passes = {
        "lse": lambda: kernels.attention_with_statistics(q, k, v, scaling=scaling),
        "row_statistics": lambda: kernels.attention_with_statistics(
            q, k, v, scaling=scaling, statistics=kernels.ROW_STATISTICS, span=(length // 4, length // 2)
        ),
        "bias_gate": lambda: kernels.attention_with_statistics(
            q, k, v, scaling=scaling, statistics=("entropy", "max", "argmax"), logit_bias=bias,
            head_gate=bias[:, 0],
        ),
        "key_pass": lambda: kernels.key_statistics(q, k, lse, scaling=scaling, pooled_cells=64),
        "key_pass_bias": lambda: kernels.key_statistics(q, k, lse, scaling=scaling, logit_bias=bias),
        "tile": lambda: kernels.probability_tile(
            q, k, lse, scaling=scaling, head=5, query_range=(length - 100, length), key_range=(0, 300)
        ),
    }  # fmt: skip
    switch = configs.switches("key", QUERY_SPLIT=split) if split > 1 else contextlib.nullcontext()
    with switch:
        for name, fn in passes.items():
            replayed, eager = _graph_case(fn, refresh)
            replayed, eager = _flatten(replayed), _flatten(eager)
            assert set(replayed) == set(eager), name
            for stat in eager:
                if stat == "pooled" and split > 1:  # up to four parts per cell: atomics in any order
                    torch.testing.assert_close(replayed[stat], eager[stat], rtol=1e-6, atol=1e-12)
                else:
                    assert torch.equal(replayed[stat], eager[stat]), f"{name}/{stat} differs after replay"
        # and the passes are still right (not just repeatable) with the split on
        keyed = kernels.key_statistics(q, k, lse, scaling=scaling, pooled_cells=64)
    reference = key_statistics_reference(q, k, scaling=scaling, pooled_cells=64, chunk=512)
    for stat in ("received", "fai", "pooled"):
        assert relative_error(keyed[stat], reference[stat]) < 1e-2, stat
