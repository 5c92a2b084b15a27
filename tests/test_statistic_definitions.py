"""One definition of each statistic: the seam's PyTorch path computes through the kernels' reference
(``workbench_kernels.reference.row_statistic`` / ``KeySums``), so the two agree on random inputs (GQA,
causal and full attention, lengths that are not multiples of any block or chunk, float64), and the torch
path gives what it gave before the definitions were shared (the old formulas are written out below)."""

from __future__ import annotations

import math

import pytest
import torch
from workbench_kernels import api as kernels
from workbench_kernels.reference import (
    KeySums,
    attention_reference,
    key_statistics_reference,
    query_chunk,
    row_statistic,
)

from workbench.seam import torch_path
from workbench.seam.plan import LayerPlan
from workbench.seam.record import LayerRecord
from workbench.seam.spec import CaptureSpec

ROW = tuple(kernels.ROW_STATISTICS)
CASES = [  # batch, kv heads, group, queries, keys, causal
    (1, 2, 2, 37, 37, True),  # GQA, a prime length
    (2, 1, 3, 50, 50, True),
    (1, 2, 2, 13, 45, True),  # queries at the last 13 of 45 keys (a chunked prefill)
    (1, 2, 1, 29, 29, False),  # full attention (vision)
]


def spec_for(keys: int) -> CaptureSpec:
    return CaptureSpec(
        statistics=ROW,
        key_statistics=("received", "fai"),
        sink_tokens=2,
        local_window=5,
        waad_window=4,
        span=(3, 11),
        fai_window=(2, 9),
        pooled_cells=min(6, keys),
    )


def random_inputs(batch, kv_heads, group, queries, keys, seed=0):
    generator = torch.Generator().manual_seed(seed)
    heads, dim = kv_heads * group, 8

    def draw(*shape, scale=1.0):
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale

    return (
        draw(batch, heads, queries, dim, scale=2.0),
        draw(batch, kv_heads, keys, dim),
        draw(batch, kv_heads, keys, dim),
    )


def torch_path_record(q, k, v, spec, causal) -> LayerRecord:
    plan = LayerPlan(spec=spec, capture_heads=list(range(q.shape[1])), phase="prefill")
    _, record = torch_path.attend(q, k, v, scaling=q.shape[-1] ** -0.5, causal=causal, mask=None, plan=plan)
    return record


def causal_probabilities(q, k):
    """Probability rows and lse of causal prefill attention, as the torch path forms them (masked keys get
    the dtype's minimum logit, then exactly 0 probability)."""
    group = q.shape[1] // k.shape[1]
    scores = q @ k.repeat_interleave(group, dim=1).transpose(-1, -2) * q.shape[-1] ** -0.5
    positions = torch.arange(q.shape[2]) + k.shape[2] - q.shape[2]
    allowed = torch.arange(k.shape[2])[None, :] <= positions[:, None]
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, -1) * allowed, torch.logsumexp(scores, -1), positions


def old_torch_path(p, lse, positions, spec):
    """The seam's torch-path formulas before they moved to the reference (whole rows at once: chunking never
    changed a value). Row statistics in p's dtype; key statistics in fp32."""
    batch, heads, _, keys = p.shape
    j = torch.arange(keys)
    distance = (positions[:, None] - j[None, :]).to(torch.float32).clamp_min(0)
    row = {
        "lse": lse,
        "entropy": -torch.special.xlogy(p, p).sum(-1),
        "max": p.amax(-1),
        "argmax": p.argmax(-1),
        "sink_mass": p[..., : spec.sink_tokens].sum(-1),
        "local_mass": (p * (distance < spec.local_window)).sum(-1),
        "span_mass": p[..., spec.span[0] : spec.span[1]].sum(-1),
        "mean_distance": (p * distance).sum(-1),
        "waad": (p * distance.clamp_max(spec.waad_window)).sum(-1),
    }
    received = p.sum(-2).float()
    lo, hi = spec.fai_window
    raw = positions[:, None] - j[None, :]
    fai_sum = (p * ((raw >= lo) & (raw <= hi))).sum(-2).float()
    count = (torch.clamp(j + hi, max=keys - 1) - (j + lo) + 1).clamp_min(0)
    fai = torch.where(count > 0, fai_sum / count.clamp_min(1), torch.zeros_like(fai_sum))
    cell = math.ceil(keys / min(spec.pooled_cells, keys))
    cells = math.ceil(keys / cell)
    summed = torch.nn.functional.pad(p, (0, cells * cell - keys)).unflatten(-1, (cells, cell)).sum(-1).float()
    pooled = torch.zeros(batch, heads, cells, cells)
    pooled.index_add_(2, positions // cell, summed)
    sizes = torch.full((cells,), cell, dtype=torch.float32)
    sizes[-1] = keys - cell * (cells - 1)
    return row, {"received": received, "fai": fai}, pooled / (sizes[:, None] * sizes[None, :])


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"b{c[0]}-kv{c[1]}x{c[2]}-q{c[3]}-k{c[4]}-{'causal' if c[5] else 'full'}"
)
def test_torch_path_computes_the_reference_definitions(case, monkeypatch):
    *shape, causal = case
    q, k, v = random_inputs(*shape)
    spec = spec_for(k.shape[2])
    monkeypatch.setattr(
        torch_path, "_CHUNK_ELEMENTS", 5 * q.shape[0] * q.shape[1] * k.shape[2]
    )  # 5-row chunks
    record = torch_path_record(q, k, v, spec, causal)
    options = dict(
        scaling=q.shape[-1] ** -0.5,
        causal=causal,
        sink_tokens=spec.sink_tokens,
        local_window=spec.local_window,
        waad_window=spec.waad_window,
        span=spec.span,
    )
    out, stats = attention_reference(q, k, v, statistics=ROW, dtype=torch.float64, chunk=7, **options)
    for name in ROW:
        if name == "argmax":
            assert torch.equal(record.row[name], stats[name]), name
        else:
            torch.testing.assert_close(record.row[name], stats[name], rtol=1e-10, atol=1e-10, msg=name)
    keyed = key_statistics_reference(
        q,
        k,
        scaling=options["scaling"],
        causal=causal,
        fai_window=spec.fai_window,
        pooled_cells=spec.pooled_cells,
        dtype=torch.float64,
        chunk=4,
    )
    for name in ("received", "fai"):
        torch.testing.assert_close(record.key[name], keyed[name].float(), rtol=1e-5, atol=1e-6, msg=name)
    cells = record.pooled.shape[-1]
    torch.testing.assert_close(
        record.pooled, keyed["pooled"][..., :cells, :cells].float(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("case", [c for c in CASES if c[5] and c[3] == c[4]], ids=str)
def test_torch_path_gives_what_it_gave_before(case):
    """Causal prefill (every capture of a language model): on the same probability rows, fed in chunks,
    the accumulator gives the old formulas' values; row statistics bit for bit."""
    *shape, _ = case
    q, k, _ = random_inputs(*shape, seed=1)
    spec = spec_for(k.shape[2])
    p, lse, positions = causal_probabilities(q, k)
    plan = LayerPlan(spec=spec, capture_heads=list(range(q.shape[1])), phase="prefill")
    accumulator = torch_path.Accumulator(plan, q.shape[0], q.shape[2], k.shape[2], "cpu")
    for rows in (slice(0, 11), slice(11, 12), slice(12, None)):
        accumulator.add(p[:, :, rows], lse[:, :, rows], positions[rows])
    record = accumulator.finish()
    row, key, pooled = old_torch_path(p, lse, positions, spec)
    for name in ROW:
        assert torch.equal(record.row[name], row[name]), name
    for name in ("received", "fai"):
        torch.testing.assert_close(record.key[name], key[name], rtol=1e-6, atol=1e-7, msg=name)
    torch.testing.assert_close(record.pooled, pooled, rtol=1e-6, atol=1e-7)


def test_full_attention_distances_are_signed():
    """With full attention (vision) keys after the query have a negative distance: they lower
    mean_distance and WAAD and are not local. One meaning for the PyTorch path and the Triton kernels
    (which always counted them so); the PyTorch path used to count them at distance 0."""
    p = torch.tensor([[[[0.25, 0.25, 0.5]]]], dtype=torch.float64)  # query 0 of 3 keys, full attention
    distance = torch.tensor([[0, -1, -2]])
    lse = torch.zeros(1, 1, 1, dtype=torch.float64)
    options = dict(sink_tokens=1, local_window=2, waad_window=1, span=(0, 1))
    assert row_statistic("mean_distance", p, lse, distance, **options).item() == pytest.approx(-1.25)
    assert row_statistic("local_mass", p, lse, distance, **options).item() == pytest.approx(0.25)
    assert row_statistic("waad", p, lse, distance, **options).item() == pytest.approx(-1.25)


def test_key_sums_count_only_real_queries_of_a_padded_batch():
    """Text 1 of a padded batch has 3 real queries of 4: its FAI divides by its own queries in the window."""
    p = torch.full((2, 1, 4, 4), 0.25)
    real = torch.tensor([[True, True, True, True], [True, True, True, False]])
    sums = KeySums(
        2, 1, 4, received=True, fai_window=(0, 3), pooled_cells=0, dtype=torch.float32, device="cpu"
    )
    sums.add(p, torch.arange(4), real)
    out = sums.finish()
    assert out["received"][0, 0].tolist() == [1.0] * 4
    assert out["received"][1, 0].tolist() == [0.75] * 4
    assert out["fai"][1, 0, 0].item() == pytest.approx(0.25)  # 0.75 over its 3 real queries


def test_one_chunking_rule_bounds_memory():
    """Rows per chunk keep batch x heads x rows x keys under the budget (never T x T at long context)."""
    rows = query_chunk(1, 32, 131072)
    assert rows * 32 * 131072 <= 1 << 22 and rows >= 1
    assert query_chunk(4, 8, 16, budget=1024) == 2
    assert query_chunk(1, 64, 1 << 23) == 1  # at least one row


def test_key_statistic_names_mean_one_thing():
    """``KEY_STATISTICS`` is the list a spec may ask for, in the kernels and in the seam alike."""
    from workbench.seam import spec as spec_module

    assert spec_module.KEY_STATISTICS is kernels.KEY_STATISTICS
    assert kernels.KEY_STATISTICS == ("received", "fai")
    with pytest.raises(ValueError, match="unknown key statistic"):
        CaptureSpec(key_statistics=("pooled",))
