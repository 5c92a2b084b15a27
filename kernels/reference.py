"""Plain PyTorch references for the Triton kernels, and the CPU path when Triton cannot run.

Same definitions and shapes as ``workbench_kernels.api`` (see its docstrings), computed by materialising one
chunk of probability rows at a time in ``dtype`` (float64 for tests). Memory is
O(chunk * H * Tk), never T x T for all rows at once.
"""

from __future__ import annotations

import torch
from workbench_kernels.api import ROW_STATISTICS


def _chunk_probabilities(q, k, *, rows, scaling, causal, logit_bias, dtype):
    """Logits and probabilities of query rows ``rows`` (a slice): (B, H, n, Tk) each, plus i_abs."""
    batch, heads, q_len, head_dim = q.shape
    kv_heads, k_len = k.shape[1], k.shape[2]
    group = heads // kv_heads
    qc = q[:, :, rows].to(dtype)
    n = qc.shape[2]
    qc = qc.reshape(batch, kv_heads, group, n, head_dim)
    kk = k.to(dtype)[:, :, None]
    s = torch.matmul(qc, kk.transpose(-1, -2)).reshape(batch, heads, n, k_len) * scaling
    if logit_bias is not None:
        s = s + logit_bias.to(device=q.device, dtype=dtype)[None, :, None, :]
    i_abs = torch.arange(rows.start, rows.start + n, device=q.device) + (k_len - q_len)
    j = torch.arange(k_len, device=q.device)
    distance = i_abs[:, None] - j[None, :]
    if causal:
        s = s.masked_fill(distance < 0, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse[..., None])
    return s, p, lse, distance


def _row_statistic(name, p, lse, distance, *, sink_tokens, local_window, waad_window, span):
    """One row statistic of a chunk of probability rows p (B, H, n, Tk); distance (n, Tk) = i_abs - j."""
    d = distance.to(p.dtype)
    if name == "lse":
        return lse
    if name == "entropy":
        return -torch.special.xlogy(p, p).sum(-1)
    if name == "max":
        return p.max(-1).values
    if name == "argmax":
        return p.argmax(-1)
    if name == "sink_mass":
        return p[..., :sink_tokens].sum(-1)
    if name == "local_mass":
        return (p * ((distance >= 0) & (distance < local_window))).sum(-1)
    if name == "span_mass":
        return p[..., span[0] : span[1]].sum(-1)
    if name == "mean_distance":
        return (p * d).sum(-1)
    if name == "waad":
        return (p * torch.clamp(d, max=waad_window)).sum(-1)
    raise ValueError(f"unknown statistic {name!r}; choose from {ROW_STATISTICS}")


def attention_reference(
    q,
    k,
    v,
    *,
    scaling,
    causal=True,
    statistics=(),
    sink_tokens=1,
    local_window=16,
    waad_window=10,
    span=None,
    logit_bias=None,
    head_gate=None,
    dtype=torch.float64,
    chunk=256,
):
    """Reference of ``attention_with_statistics``; out (B, Tq, H, D) and stats (B, H, Tq) in ``dtype``."""
    batch, heads, q_len, head_dim = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    wants = set(statistics) | {"lse"}
    unknown = wants - set(ROW_STATISTICS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; choose from {ROW_STATISTICS}")
    out = torch.empty((batch, q_len, heads, head_dim), dtype=dtype, device=q.device)
    stats = {
        name: torch.empty(
            (batch, heads, q_len), dtype=torch.int64 if name == "argmax" else dtype, device=q.device
        )
        for name in wants
    }
    vv = v.to(dtype)[:, :, None]
    for start in range(0, q_len, chunk):
        rows = slice(start, min(start + chunk, q_len))
        _, p, lse, distance = _chunk_probabilities(
            q, k, rows=rows, scaling=scaling, causal=causal, logit_bias=logit_bias, dtype=dtype
        )
        n = p.shape[2]
        o = torch.matmul(p.reshape(batch, kv_heads, group, n, -1), vv).reshape(batch, heads, n, head_dim)
        if head_gate is not None:
            o = o * head_gate.to(device=q.device, dtype=dtype)[None, :, None, None]
        out[:, rows] = o.transpose(1, 2)
        for name in wants:
            stats[name][:, :, rows] = _row_statistic(
                name,
                p,
                lse,
                distance,
                sink_tokens=sink_tokens,
                local_window=local_window,
                waad_window=waad_window,
                span=span,
            )
    return out, stats


def key_statistics_reference(
    q,
    k,
    lse=None,
    *,
    scaling,
    causal=True,
    logit_bias=None,
    received=True,
    fai_window=(10, 100),
    pooled_cells=0,
    dtype=torch.float64,
    chunk=256,
):
    """Reference of ``key_statistics``. ``lse`` is ignored: rows are normalised exactly in ``dtype``."""
    batch, heads, q_len, _ = q.shape
    k_len = k.shape[2]
    q_offset = k_len - q_len
    received_sum = torch.zeros((batch, heads, k_len), dtype=dtype, device=q.device)
    fai_sum = torch.zeros_like(received_sum)
    fai_count = torch.zeros(k_len, dtype=dtype, device=q.device)
    cells = min(pooled_cells, k_len) if pooled_cells else 0
    cell = -(-k_len // cells) if cells else 1
    pooled_sum = torch.zeros((batch, heads, max(cells, 1), max(cells, 1)), dtype=dtype, device=q.device)
    key_cell = torch.arange(k_len, device=q.device) // cell
    for start in range(0, q_len, chunk):
        rows = slice(start, min(start + chunk, q_len))
        _, p, _, distance = _chunk_probabilities(
            q, k, rows=rows, scaling=scaling, causal=causal, logit_bias=logit_bias, dtype=dtype
        )
        received_sum += p.sum(2)
        if fai_window is not None:
            window = (distance >= fai_window[0]) & (distance <= fai_window[1])
            fai_sum += (p * window).sum(2)
            fai_count += window.sum(0)
        if cells:
            by_key_cell = torch.zeros(p.shape[:3] + (cells,), dtype=dtype, device=q.device)
            by_key_cell.index_add_(3, key_cell, p)
            i_abs = torch.arange(rows.start, rows.stop, device=q.device) + q_offset
            pooled_sum.index_add_(2, i_abs // cell, by_key_cell)
    results = {}
    if received:
        results["received"] = received_sum
    if fai_window is not None:
        results["fai"] = torch.where(
            fai_count > 0, fai_sum / fai_count.clamp(min=1), torch.zeros_like(fai_sum)
        )
    if cells:
        i_abs = torch.arange(q_len, device=q.device) + q_offset
        rows_per_cell = torch.bincount(i_abs // cell, minlength=cells)[:cells].to(dtype)
        cols_per_cell = torch.bincount(key_cell, minlength=cells)[:cells].to(dtype)
        counts = rows_per_cell[:, None] * cols_per_cell[None, :]
        results["pooled"] = torch.where(
            counts > 0, pooled_sum / counts.clamp(min=1), torch.zeros_like(pooled_sum)
        )
    return results


def probability_tile_reference(
    q,
    k,
    lse=None,
    *,
    scaling,
    head,
    query_range,
    key_range,
    causal=True,
    logit_bias=None,
    dtype=torch.float64,
):
    """Reference of ``probability_tile``: (B, q1 - q0, k1 - k0), rows normalised exactly."""
    rows = slice(query_range[0], query_range[1])
    group = q.shape[1] // k.shape[1]
    bias = logit_bias[head : head + 1] if logit_bias is not None else None
    _, p, _, _ = _chunk_probabilities(
        q[:, head : head + 1],
        k[:, head // group : head // group + 1],
        rows=rows,
        scaling=scaling,
        causal=causal,
        logit_bias=bias,
        dtype=dtype,
    )
    return p[:, 0, :, key_range[0] : key_range[1]]
