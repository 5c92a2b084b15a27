"""Flash-attention forward that also writes per-query-row statistics, in one pass.

Supports: causal or full attention, native GQA (query head h reads KV head h // (H // Hkv); K/V are
never repeated), fp16 / bf16 inputs (fp32 on the CPU interpreter and for tests), any head dimension up
to 256 (power-of-two dims are fastest; others are padded and masked), any Tq <= Tk (query i sits at
absolute position Tk - Tq + i, so decode with a KV cache works), lengths that are not multiples of the
block. Intervention hooks: an additive fp32 logit bias per (head, key) and an fp32 gate per head that
multiplies that head's output (statistics describe the attention before the gate).
Statistics (each a ``tl.constexpr`` switch; none requested compiles to a plain flash forward): lse,
entropy, max, argmax, sink / local / span mass, mean distance, WAAD. All in fp32.
Does not support: gradients, padding masks or arbitrary attention masks, dropout, sliding windows,
soft-capping, bias per (head, query, key). A row whose every key has bias -inf gets a uniform row
instead of NaN (biases are clamped to -1e30).

Layout: q (B, H, Tq, D), k / v (B, Hkv, Tk, D), any strides; out (B, Tq, H, D) (what HF attention
functions return); statistics (B, H, Tq).

Online statistics (log2 domain, x = s*log2(e) - m over the running max m, e = 2^x, l = sum e):
    entropy = ln2 * (log2 l - u / l),  u = sum e * x, rescaled as u <- alpha * (u + (m_old - m_new) * l)
    max p   = 1 / l (the largest e is 2^0)
    mean distance, sink / local / span mass, WAAD: sums of e * weight, rescaled by alpha like l.
Local mass and WAAD only need keys within the window of the diagonal: far blocks skip them at run time
(WAAD = W - sum p * max(W - d, 0)).
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E_VALUE = 1.4426950408889634
LOG2E = tl.constexpr(LOG2E_VALUE)
LN2 = tl.constexpr(0.6931471805599453)
MASKED_LOGIT_VALUE = -1.0e30
MASKED_LOGIT = tl.constexpr(MASKED_LOGIT_VALUE)


@triton.jit
def _near_diagonal(
    local_i, waad_i, p, i_abs, offs_kn, local_window, waad_window, LOCAL: tl.constexpr, WAAD: tl.constexpr
):
    """Local mass and WAAD terms of one block; zero for keys farther than the window."""
    distance = i_abs[:, None] - offs_kn[None, :]
    if LOCAL:
        near = (distance >= 0) & (distance < local_window)
        local_i += tl.sum(tl.where(near, p, 0.0), 1)
    if WAAD:
        waad_i += tl.sum(p * tl.maximum(waad_window - distance, 0).to(tl.float32), 1)
    return local_i, waad_i


@triton.jit
def _forward_steps(
    acc,
    l_i,
    m_i,
    entropy_i,
    argmax_i,
    sink_i,
    local_i,
    span_i,
    distance_i,
    waad_i,
    q,
    k_base,
    v_base,
    bias_base,
    stride_kn,
    stride_kd,
    stride_vn,
    stride_vd,
    lo,
    hi,
    i_abs,
    offs_n,
    offs_d,
    Tk,
    qk_scale,
    sink_tokens,
    local_window,
    waad_window,
    span_start,
    span_end,
    near_start,
    HEAD_DIM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ENTROPY: tl.constexpr,
    ARGMAX: tl.constexpr,
    SINK: tl.constexpr,
    LOCAL: tl.constexpr,
    SPAN: tl.constexpr,
    DISTANCE: tl.constexpr,
    WAAD: tl.constexpr,
    EVEN_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    for start_n in range(lo, hi, BLOCK_N):
        offs_kn = start_n + offs_n
        k_ptrs = k_base + offs_kn[:, None] * stride_kn + offs_d[None, :] * stride_kd
        v_ptrs = v_base + offs_kn[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if MASKED:
            kv_mask = (offs_kn[:, None] < Tk) & (offs_d[None, :] < HEAD_DIM)
            k = tl.load(k_ptrs, mask=kv_mask, other=0.0)
        elif EVEN_D:
            k = tl.load(k_ptrs)
        else:
            k = tl.load(k_ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        if HAS_BIAS or MASKED:
            s = qk * qk_scale
            if HAS_BIAS:
                if MASKED:
                    s += tl.load(bias_base + offs_kn, mask=offs_kn < Tk, other=0.0)[None, :]
                else:
                    s += tl.load(bias_base + offs_kn)[None, :]
            if MASKED:
                visible = offs_kn[None, :] < Tk
                if CAUSAL:
                    visible = visible & (offs_kn[None, :] <= i_abs[:, None])
                s = tl.where(visible, s, MASKED_LOGIT)
            if ARGMAX:
                block_max, block_arg = tl.max(s, 1, return_indices=True)
            else:
                block_max = tl.max(s, 1)
            m_new = tl.maximum(m_i, block_max)
            x = s - m_new[:, None]
        else:
            # qk_scale > 0, so the max of the scaled logits is the scaled max: one FMA per score.
            if ARGMAX:
                block_max, block_arg = tl.max(qk, 1, return_indices=True)
                block_max = block_max * qk_scale
            else:
                block_max = tl.max(qk, 1) * qk_scale
            m_new = tl.maximum(m_i, block_max)
            x = qk * qk_scale - m_new[:, None]
        if ARGMAX:
            argmax_i = tl.where(block_max > m_i, block_arg + start_n, argmax_i)
        p = tl.math.exp2(x)
        alpha = tl.math.exp2(m_i - m_new)
        row_sum = tl.sum(p, 1)
        if ENTROPY:
            entropy_i = alpha * (entropy_i + (m_i - m_new) * l_i) + tl.sum(p * x, 1)
        l_i = l_i * alpha + row_sum
        acc = acc * alpha[:, None]
        if MASKED:
            v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
        elif EVEN_D:
            v = tl.load(v_ptrs)
        else:
            v = tl.load(v_ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        if DISTANCE:
            # sum e * (i_abs - j) = (i_abs - start_n) * sum e - sum e * (j - start_n)
            local_index = offs_n.to(tl.float32)
            distance_i = (
                distance_i * alpha
                + (i_abs - start_n).to(tl.float32) * row_sum
                - tl.sum(p * local_index[None, :], 1)
            )
        if SINK:
            sink_i = sink_i * alpha
            if start_n < sink_tokens:
                sink_i += tl.sum(tl.where(offs_kn[None, :] < sink_tokens, p, 0.0), 1)
        if SPAN:
            span_i = span_i * alpha
            if (start_n < span_end) & (start_n + BLOCK_N > span_start):
                in_span = (offs_kn[None, :] >= span_start) & (offs_kn[None, :] < span_end)
                span_i += tl.sum(tl.where(in_span, p, 0.0), 1)
        if LOCAL:
            local_i = local_i * alpha
        if WAAD:
            waad_i = waad_i * alpha
        if LOCAL or WAAD:
            if MASKED:
                local_i, waad_i = _near_diagonal(
                    local_i, waad_i, p, i_abs, offs_kn, local_window, waad_window, LOCAL, WAAD
                )
            else:
                if start_n + BLOCK_N > near_start:
                    local_i, waad_i = _near_diagonal(
                        local_i, waad_i, p, i_abs, offs_kn, local_window, waad_window, LOCAL, WAAD
                    )
        m_i = m_new
    return acc, l_i, m_i, entropy_i, argmax_i, sink_i, local_i, span_i, distance_i, waad_i


@triton.jit
def attention_forward_kernel(
    Q,
    K,
    V,
    Out,
    Bias,
    Gate,
    Lse,
    Entropy,
    MaxP,
    Argmax,
    Sink,
    Local,
    Span,
    Distance,
    Waad,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_ob,
    stride_om,
    stride_oh,
    stride_od,
    stride_bias_h,
    H,
    heads_per_kv,
    Tq,
    Tk,
    qk_scale,
    sink_tokens,
    local_window,
    waad_window,
    span_start,
    span_end,
    near_window,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_GATE: tl.constexpr,
    ENTROPY: tl.constexpr,
    MAX: tl.constexpr,
    ARGMAX: tl.constexpr,
    SINK: tl.constexpr,
    LOCAL: tl.constexpr,
    SPAN: tl.constexpr,
    DISTANCE: tl.constexpr,
    WAAD: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    # Longest causal rows first: the last query blocks have the most keys.
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    pid_bh = tl.program_id(1)
    batch = pid_bh // H
    head = pid_bh % H
    kv_head = head // heads_per_kv
    EVEN_D: tl.constexpr = BLOCK_D == HEAD_DIM

    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q_offset = Tk - Tq
    i_abs = offs_m + q_offset

    q_base = Q + batch.to(tl.int64) * stride_qb + head.to(tl.int64) * stride_qh
    k_base = K + batch.to(tl.int64) * stride_kb + kv_head.to(tl.int64) * stride_kh
    v_base = V + batch.to(tl.int64) * stride_vb + kv_head.to(tl.int64) * stride_vh
    bias_base = Bias + head.to(tl.int64) * stride_bias_h
    q_ptrs = q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=(offs_m[:, None] < Tq) & (offs_d[None, :] < HEAD_DIM), other=0.0)

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) + MASKED_LOGIT
    entropy_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    argmax_i = tl.zeros([BLOCK_M], dtype=tl.int32)
    sink_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    local_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    span_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    distance_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    waad_i = tl.zeros([BLOCK_M], dtype=tl.float32)

    if CAUSAL:
        # Keys below the block's first absolute position are visible to every row: no mask there.
        first_abs = start_m + q_offset
        diag_lo = (first_abs // BLOCK_N) * BLOCK_N
        hi = tl.minimum(tl.minimum(start_m + BLOCK_M, Tq) + q_offset, Tk)
    else:
        diag_lo = (Tk // BLOCK_N) * BLOCK_N
        hi = Tk
        first_abs = start_m + q_offset
    near_start = first_abs - near_window + 1

    acc, l_i, m_i, entropy_i, argmax_i, sink_i, local_i, span_i, distance_i, waad_i = _forward_steps(
        acc,
        l_i,
        m_i,
        entropy_i,
        argmax_i,
        sink_i,
        local_i,
        span_i,
        distance_i,
        waad_i,
        q,
        k_base,
        v_base,
        bias_base,
        stride_kn,
        stride_kd,
        stride_vn,
        stride_vd,
        0,
        diag_lo,
        i_abs,
        offs_n,
        offs_d,
        Tk,
        qk_scale,
        sink_tokens,
        local_window,
        waad_window,
        span_start,
        span_end,
        near_start,
        HEAD_DIM,
        BLOCK_N,
        False,
        CAUSAL,
        HAS_BIAS,
        ENTROPY,
        ARGMAX,
        SINK,
        LOCAL,
        SPAN,
        DISTANCE,
        WAAD,
        EVEN_D,
        DOT_PRECISION,
    )
    acc, l_i, m_i, entropy_i, argmax_i, sink_i, local_i, span_i, distance_i, waad_i = _forward_steps(
        acc,
        l_i,
        m_i,
        entropy_i,
        argmax_i,
        sink_i,
        local_i,
        span_i,
        distance_i,
        waad_i,
        q,
        k_base,
        v_base,
        bias_base,
        stride_kn,
        stride_kd,
        stride_vn,
        stride_vd,
        diag_lo,
        hi,
        i_abs,
        offs_n,
        offs_d,
        Tk,
        qk_scale,
        sink_tokens,
        local_window,
        waad_window,
        span_start,
        span_end,
        near_start,
        HEAD_DIM,
        BLOCK_N,
        True,
        CAUSAL,
        HAS_BIAS,
        ENTROPY,
        ARGMAX,
        SINK,
        LOCAL,
        SPAN,
        DISTANCE,
        WAAD,
        EVEN_D,
        DOT_PRECISION,
    )

    row_mask = offs_m < Tq
    log2_l = tl.math.log2(l_i)
    inv_l = 1.0 / l_i
    out = acc * inv_l[:, None]
    if HAS_GATE:
        out = out * tl.load(Gate + head)
    o_base = Out + batch.to(tl.int64) * stride_ob + head.to(tl.int64) * stride_oh
    o_ptrs = o_base + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_mask[:, None] & (offs_d[None, :] < HEAD_DIM))

    stat_offset = pid_bh.to(tl.int64) * Tq + offs_m
    tl.store(Lse + stat_offset, (m_i + log2_l) * LN2, mask=row_mask)
    if ENTROPY:
        tl.store(Entropy + stat_offset, (log2_l - entropy_i * inv_l) * LN2, mask=row_mask)
    if MAX:
        tl.store(MaxP + stat_offset, inv_l, mask=row_mask)
    if ARGMAX:
        tl.store(Argmax + stat_offset, argmax_i.to(tl.int64), mask=row_mask)
    if SINK:
        tl.store(Sink + stat_offset, sink_i * inv_l, mask=row_mask)
    if LOCAL:
        tl.store(Local + stat_offset, local_i * inv_l, mask=row_mask)
    if SPAN:
        tl.store(Span + stat_offset, span_i * inv_l, mask=row_mask)
    if DISTANCE:
        tl.store(Distance + stat_offset, distance_i * inv_l, mask=row_mask)
    if WAAD:
        tl.store(Waad + stat_offset, waad_window - waad_i * inv_l, mask=row_mask)


def attention_forward(
    q,
    k,
    v,
    *,
    scaling,
    causal,
    statistics,
    sink_tokens,
    local_window,
    waad_window,
    span,
    logit_bias,
    head_gate,
):
    """Launch the forward. Arguments are already validated by ``kernels.api``; returns (out, stats)."""
    import torch

    from kernels.configs import block_d, forward_config

    batch, heads, q_len, head_dim = q.shape
    kv_heads, k_len = k.shape[1], k.shape[2]
    wants = set(statistics)
    config = forward_config(head_dim, q.dtype, q.device, with_statistics=bool(wants - {"lse"}))
    out = torch.empty((batch, q_len, heads, head_dim), dtype=q.dtype, device=q.device)
    stats = {"lse": torch.empty((batch, heads, q_len), dtype=torch.float32, device=q.device)}
    for name in wants - {"lse"}:
        dtype = torch.int64 if name == "argmax" else torch.float32
        stats[name] = torch.empty((batch, heads, q_len), dtype=dtype, device=q.device)
    dummy = stats["lse"]
    if logit_bias is not None:
        bias = (
            logit_bias.to(device=q.device, dtype=torch.float32).clamp(min=MASKED_LOGIT_VALUE) * LOG2E_VALUE
        ).contiguous()
    else:
        bias = dummy
    gate = head_gate.to(device=q.device, dtype=torch.float32).contiguous() if head_gate is not None else dummy
    span_start, span_end = span if span is not None else (0, 0)
    near_window = max(local_window if "local_mass" in wants else 0, waad_window if "waad" in wants else 0)
    grid = (triton.cdiv(q_len, config["BLOCK_M"]), batch * heads)
    attention_forward_kernel[grid](
        q,
        k,
        v,
        out,
        bias,
        gate,
        stats["lse"],
        stats.get("entropy", dummy),
        stats.get("max", dummy),
        stats.get("argmax", dummy),
        stats.get("sink_mass", dummy),
        stats.get("local_mass", dummy),
        stats.get("span_mass", dummy),
        stats.get("mean_distance", dummy),
        stats.get("waad", dummy),
        *q.stride(),
        *k.stride(),
        *v.stride(),
        *out.stride(),
        bias.stride(0) if logit_bias is not None else 0,
        heads,
        heads // kv_heads,
        q_len,
        k_len,
        scaling * LOG2E_VALUE,
        sink_tokens,
        local_window,
        waad_window,
        span_start,
        span_end,
        near_window,
        HEAD_DIM=head_dim,
        BLOCK_D=block_d(head_dim),
        BLOCK_M=config["BLOCK_M"],
        BLOCK_N=config["BLOCK_N"],
        CAUSAL=causal,
        HAS_BIAS=logit_bias is not None,
        HAS_GATE=head_gate is not None,
        ENTROPY="entropy" in wants,
        MAX="max" in wants,
        ARGMAX="argmax" in wants,
        SINK="sink_mass" in wants,
        LOCAL="local_mass" in wants,
        SPAN="span_mass" in wants,
        DISTANCE="mean_distance" in wants,
        WAAD="waad" in wants,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=config["num_warps"],
        num_stages=config["num_stages"],
    )
    return out, stats
