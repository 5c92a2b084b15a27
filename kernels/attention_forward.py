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
instead of NaN (biases are clamped to -1e30). With causal=False, local mass and WAAD re-read every key
after the query block (WAAD's min(i - j, W) counts keys after the query with negative distance).

Layout: q (B, H, Tq, D), k / v (B, Hkv, Tk, D), any strides; out (B, Tq, H, D) (what HF attention
functions return); statistics (B, H, Tq).

Main loop (log2 domain; x = s * log2(e) - m over the running max m; e = 2^x; l = sum e):
    entropy = ln2 * (log2 l - u / l),  u = sum e * x, rescaled as u <- alpha * (u + (m_old - m_new) * l)
    max p   = 1 / l (the largest e is 2^0); argmax tracks the block where the running max rose
    mean distance and span mass: sums of e * weight, rescaled by alpha like l.
Epilogue, once m and l are final: sink mass, local mass and WAAD only involve the first sink_tokens keys
and the keys within the window of the diagonal, so they are recomputed exactly there (a few extra
q.k tiles per query block) instead of costing every step of the main loop. WAAD = W - sum p max(W - d, 0).
Speed switches (constexpr, all exact; kernels/configs.py): ARGMAX_PACKED (index in the low mantissa bits
of one float max; max p then recomputed at the argmax), DISTANCE_MMA (distance sums on the tensor cores),
ARGMAX_BRANCH (index search only where the running max rose), ROWSUM_MMA (row sum and absolute key
position sums as one p @ [BLOCK_N, 16] product, entropy from sum e * s; see the comment in the loop;
a row whose every key has bias -inf loses its entropy to cancellation at -1e30 on this path).
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
def bias_log2(bias):
    """A loaded logit bias (any float dtype) in log2 units, clamped at -1e30 so that a row whose keys are
    all -inf stays finite: the fp32 max and product the launchers ran as PyTorch kernels before round 4."""
    return tl.maximum(bias.to(tl.float32), MASKED_LOGIT) * LOG2E


# fmt: off
@triton.jit
def _forward_steps(
    acc, l_i, m_i, entropy_i, argmax_i, span_i, distance_i, distance_acc,
    q, k_base, v_base, bias_base, stride_bias_k, stride_kn, stride_kd, stride_vn, stride_vd,
    lo, hi, i_abs, offs_n, offs_d, Tk, qk_scale, span_start, span_end,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    HAS_BIAS: tl.constexpr, ENTROPY: tl.constexpr, ARGMAX: tl.constexpr, ARGMAX_BRANCH: tl.constexpr,
    ARGMAX_PACKED: tl.constexpr, SPAN: tl.constexpr, DISTANCE: tl.constexpr, DISTANCE_MMA: tl.constexpr,
    ROWSUM_MMA: tl.constexpr, EVEN_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Online softmax over key blocks [lo, hi); MASKED applies the causal and key-bound masks."""
    columns = tl.arange(0, 16)[None, :]
    if ROWSUM_MMA:
        # [BLOCK_N, 16] operand: column 0 the local key offset j - start_n, column 1 ones, columns 2 and 3
        # the block index start_n / BLOCK_N mod 256 and / 256 (set per step): every entry an integer
        # <= 255, exact in bf16 / fp16. p @ operand accumulates, rescaled by alpha, the row sum l and
        # sum e * j = acc0 + BLOCK_N * (acc2 + 256 * acc3): no per-score add for l or distance.
        fixed_columns = tl.where(columns == 0, offs_n[:, None], tl.where(columns == 1, 1, 0))
    elif DISTANCE and DISTANCE_MMA:
        # [BLOCK_N, 16] operand holding the local key offset j - start_n in column 0 (exact in bf16 / fp16
        # for BLOCK_N <= 256): p @ offsets puts sum e * (j - start_n) on the tensor cores.
        offsets = tl.where(tl.arange(0, 16)[None, :] == 0, offs_n[:, None], 0).to(v_base.dtype.element_ty)
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
            scores = qk * qk_scale
            if HAS_BIAS:
                if MASKED:
                    scores += bias_log2(tl.load(bias_base + offs_kn * stride_bias_k, mask=offs_kn < Tk, other=0.0))[None, :]
                else:
                    scores += bias_log2(tl.load(bias_base + offs_kn * stride_bias_k))[None, :]
            if MASKED:
                visible = offs_kn[None, :] < Tk
                if CAUSAL:
                    visible = visible & (offs_kn[None, :] <= i_abs[:, None])
                scores = tl.where(visible, scores, MASKED_LOGIT)
            score_scale = 1.0
        else:
            # qk_scale > 0: the max of the scaled scores is the scaled max, so x is one FMA per score.
            scores = qk
            score_scale = qk_scale
        if ARGMAX and ARGMAX_PACKED:
            # The low log2(BLOCK_N) mantissa bits of each score replaced by its column: one float max
            # gives a block max within 2^-(23 - log2 BLOCK_N) relative of the true one and the column of
            # an element that attains it. m is then not exactly the row max; lse, entropy and the sums do
            # not depend on m, and max p is recomputed exactly at the argmax in the epilogue.
            packed = ((scores.to(tl.int32, bitcast=True) & (-BLOCK_N)) | offs_n[None, :]).to(
                tl.float32, bitcast=True)
            score_max = tl.max(packed, 1)
            block_arg = score_max.to(tl.int32, bitcast=True) & (BLOCK_N - 1)
        elif ARGMAX and not ARGMAX_BRANCH:
            score_max, block_arg = tl.max(scores, 1, return_indices=True)
        else:
            score_max = tl.max(scores, 1)
        block_max = score_max * score_scale
        if ARGMAX:
            improved = block_max > m_i  # strict: ties keep the earlier (lower) key
            if ARGMAX_BRANCH and not ARGMAX_PACKED:
                # Only blocks that raise some row's running max need the index search.
                if tl.max(improved.to(tl.int32), 0) > 0:
                    candidate = tl.min(tl.where(scores == score_max[:, None], offs_n[None, :], BLOCK_N), 1)
                    argmax_i = tl.where(improved, candidate + start_n, argmax_i)
            else:
                argmax_i = tl.where(improved, block_arg + start_n, argmax_i)
        m_new = tl.maximum(m_i, block_max)
        x = scores * score_scale - m_new[:, None]
        p = tl.math.exp2(x)
        alpha = tl.math.exp2(m_i - m_new)
        if ROWSUM_MMA:
            if ENTROPY:
                # u' = sum e * s (s in log2 units, not shifted by m): rescaled by alpha only, so l is not
                # needed per step; the epilogue takes u = u' - m l = sum e * x.
                entropy_i = alpha * entropy_i + score_scale * tl.sum(p * scores, 1)
        else:
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
        p_cast = p.to(v.dtype)
        acc = tl.dot(p_cast, v, acc, input_precision=DOT_PRECISION)
        if ROWSUM_MMA:
            block = start_n // BLOCK_N
            operand = tl.where(columns == 2, block % 256, tl.where(columns == 3, block // 256, fixed_columns))
            distance_acc = tl.dot(p_cast, operand.to(v_base.dtype.element_ty), distance_acc * alpha[:, None],
                                  input_precision=DOT_PRECISION)
        elif DISTANCE:
            # sum e * (i_abs - j) = (i_abs - start_n) * sum e - sum e * (j - start_n): small terms, exact in fp32
            if DISTANCE_MMA:
                distance_i = distance_i * alpha + (i_abs - start_n).to(tl.float32) * row_sum
                distance_acc = tl.dot(p_cast, offsets, distance_acc * alpha[:, None],
                                      input_precision=DOT_PRECISION)
            else:
                distance_i = (distance_i * alpha + (i_abs - start_n).to(tl.float32) * row_sum
                              - tl.sum(p * offs_n.to(tl.float32)[None, :], 1))
        if SPAN:
            span_i = span_i * alpha
            if (start_n < span_end) & (start_n + BLOCK_N > span_start):
                in_span = (offs_kn[None, :] >= span_start) & (offs_kn[None, :] < span_end)
                span_i += tl.sum(tl.where(in_span, p, 0.0), 1)
        m_i = m_new
    return acc, l_i, m_i, entropy_i, argmax_i, span_i, distance_i, distance_acc


@triton.jit
def _epilogue_masses(
    sink_i, local_i, waad_i,
    q, k_base, bias_base, stride_bias_k, stride_kn, stride_kd,
    lo, hi, m_i, i_abs, offs_n, offs_d, Tk, qk_scale, sink_tokens, local_window, waad_window,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr,
    SINK: tl.constexpr, LOCAL: tl.constexpr, WAAD: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Unnormalised sink / local / WAAD sums over keys [lo, hi), with the final row max m_i."""
    for start_n in range(lo, hi, BLOCK_N):
        offs_kn = start_n + offs_n
        k = tl.load(k_base + offs_kn[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                    mask=(offs_kn[:, None] < Tk) & (offs_d[None, :] < HEAD_DIM), other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        if HAS_BIAS:
            scores += bias_log2(tl.load(bias_base + offs_kn * stride_bias_k, mask=offs_kn < Tk, other=0.0))[None, :]
        distance = i_abs[:, None] - offs_kn[None, :]
        visible = offs_kn[None, :] < Tk
        if CAUSAL:
            visible = visible & (distance >= 0)
        p = tl.where(visible, tl.math.exp2(scores - m_i[:, None]), 0.0)
        if SINK:
            sink_i += tl.sum(tl.where(offs_kn[None, :] < sink_tokens, p, 0.0), 1)
        if LOCAL:
            local_i += tl.sum(tl.where((distance >= 0) & (distance < local_window), p, 0.0), 1)
        if WAAD:
            waad_i += tl.sum(p * tl.maximum(waad_window - distance, 0).to(tl.float32), 1)
    return sink_i, local_i, waad_i


@triton.jit
def attention_forward_kernel(
    Q, K, V, Out, Bias, Gate,
    Lse, Entropy, MaxP, Argmax, Sink, Local, Span, Distance, Waad,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_om, stride_oh, stride_od,
    stride_bias_h, stride_bias_k, stride_gate,
    H, heads_per_kv, Tq, Tk, qk_scale,
    sink_tokens, local_window, waad_window, near_window, span_start, span_end,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_GATE: tl.constexpr,
    ENTROPY: tl.constexpr, MAX: tl.constexpr, ARGMAX: tl.constexpr, SINK: tl.constexpr,
    LOCAL: tl.constexpr, SPAN: tl.constexpr, DISTANCE: tl.constexpr, WAAD: tl.constexpr,
    ARGMAX_BRANCH: tl.constexpr, ARGMAX_PACKED: tl.constexpr, DISTANCE_MMA: tl.constexpr,
    ROWSUM_MMA: tl.constexpr, DOT_PRECISION: tl.constexpr,
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
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=(offs_m[:, None] < Tq) & (offs_d[None, :] < HEAD_DIM), other=0.0)

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) + MASKED_LOGIT
    entropy_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    argmax_i = tl.zeros([BLOCK_M], dtype=tl.int32)
    span_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    distance_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    distance_acc = tl.zeros([BLOCK_M, 16], dtype=tl.float32)

    first_abs = start_m + q_offset
    last_abs = tl.minimum(start_m + BLOCK_M, Tq) - 1 + q_offset
    if CAUSAL:
        # Keys below the block's first absolute position are visible to every row: no mask there.
        diag_lo = (first_abs // BLOCK_N) * BLOCK_N
        hi = last_abs + 1
    else:
        diag_lo = (Tk // BLOCK_N) * BLOCK_N
        hi = Tk

    acc, l_i, m_i, entropy_i, argmax_i, span_i, distance_i, distance_acc = _forward_steps(
        acc, l_i, m_i, entropy_i, argmax_i, span_i, distance_i, distance_acc,
        q, k_base, v_base, bias_base, stride_bias_k, stride_kn, stride_kd, stride_vn, stride_vd,
        0, diag_lo, i_abs, offs_n, offs_d, Tk, qk_scale, span_start, span_end,
        HEAD_DIM, BLOCK_N, False, CAUSAL, HAS_BIAS, ENTROPY, ARGMAX, ARGMAX_BRANCH, ARGMAX_PACKED, SPAN,
        DISTANCE, DISTANCE_MMA, ROWSUM_MMA, EVEN_D, DOT_PRECISION,
    )
    acc, l_i, m_i, entropy_i, argmax_i, span_i, distance_i, distance_acc = _forward_steps(
        acc, l_i, m_i, entropy_i, argmax_i, span_i, distance_i, distance_acc,
        q, k_base, v_base, bias_base, stride_bias_k, stride_kn, stride_kd, stride_vn, stride_vd,
        diag_lo, hi, i_abs, offs_n, offs_d, Tk, qk_scale, span_start, span_end,
        HEAD_DIM, BLOCK_N, True, CAUSAL, HAS_BIAS, ENTROPY, ARGMAX, ARGMAX_BRANCH, ARGMAX_PACKED, SPAN,
        DISTANCE, DISTANCE_MMA, ROWSUM_MMA, EVEN_D, DOT_PRECISION,
    )

    if ROWSUM_MMA:
        columns = tl.arange(0, 16)[None, :]
        l_i = tl.sum(tl.where(columns == 1, distance_acc, 0.0), 1)
        if ENTROPY:
            entropy_i = entropy_i - m_i * l_i
        if DISTANCE:
            key_sum = tl.sum(tl.where(columns == 0, distance_acc, 0.0), 1) + BLOCK_N * (
                tl.sum(tl.where(columns == 2, distance_acc, 0.0), 1)
                + 256.0 * tl.sum(tl.where(columns == 3, distance_acc, 0.0), 1))
            distance_i = i_abs.to(tl.float32) * l_i - key_sum

    sink_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    local_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    waad_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    if SINK:
        sink_i, local_i, waad_i = _epilogue_masses(
            sink_i, local_i, waad_i, q, k_base, bias_base, stride_bias_k, stride_kn, stride_kd,
            0, tl.minimum(sink_tokens, hi), m_i, i_abs, offs_n, offs_d, Tk, qk_scale,
            sink_tokens, local_window, waad_window,
            HEAD_DIM, BLOCK_N, CAUSAL, HAS_BIAS, True, False, False, DOT_PRECISION,
        )
    if LOCAL or WAAD:
        if CAUSAL:
            near_hi = hi
        else:
            near_hi = Tk  # full attention: WAAD counts keys after the query too (negative distance)
        sink_i, local_i, waad_i = _epilogue_masses(
            sink_i, local_i, waad_i, q, k_base, bias_base, stride_bias_k, stride_kn, stride_kd,
            tl.maximum(first_abs - near_window + 1, 0), near_hi, m_i, i_abs, offs_n, offs_d, Tk, qk_scale,
            sink_tokens, local_window, waad_window,
            HEAD_DIM, BLOCK_N, CAUSAL, HAS_BIAS, False, LOCAL, WAAD, DOT_PRECISION,
        )

    row_mask = offs_m < Tq
    log2_l = tl.math.log2(l_i)
    inv_l = 1.0 / l_i
    out = acc * inv_l[:, None]
    if HAS_GATE:
        out = out * tl.load(Gate + head * stride_gate).to(tl.float32)
    o_base = Out + batch.to(tl.int64) * stride_ob + head.to(tl.int64) * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od, out.to(Out.dtype.element_ty),
             mask=row_mask[:, None] & (offs_d[None, :] < HEAD_DIM))

    stat_offset = pid_bh.to(tl.int64) * Tq + offs_m
    tl.store(Lse + stat_offset, (m_i + log2_l) * LN2, mask=row_mask)
    if ENTROPY:
        tl.store(Entropy + stat_offset, (log2_l - entropy_i * inv_l) * LN2, mask=row_mask)
    if MAX:
        if ARGMAX and ARGMAX_PACKED:
            # m is the packed max, not the exact one: max p = e^(s at the argmax - m) / l, s recomputed
            # from one gathered key row per query (BLOCK_M x D loads once per program).
            # q is re-read from memory in 32-wide slices so no [BLOCK_M, D] fp32 tile is live.
            CHUNK_D: tl.constexpr = 32 if BLOCK_D >= 32 else BLOCK_D
            s_at = tl.zeros([BLOCK_M], dtype=tl.float32)
            for d0 in tl.static_range(0, BLOCK_D, CHUNK_D):
                offs_c = d0 + tl.arange(0, CHUNK_D)
                chunk_mask = row_mask[:, None] & (offs_c[None, :] < HEAD_DIM)
                k_at = tl.load(k_base + argmax_i[:, None].to(tl.int64) * stride_kn + offs_c[None, :] * stride_kd,
                               mask=chunk_mask, other=0.0)
                q_at = tl.load(q_base + offs_m[:, None] * stride_qm + offs_c[None, :] * stride_qd,
                               mask=chunk_mask, other=0.0)
                s_at += tl.sum(q_at.to(tl.float32) * k_at.to(tl.float32), 1)
            s_at = s_at * qk_scale
            if HAS_BIAS:
                s_at += bias_log2(tl.load(bias_base + argmax_i * stride_bias_k, mask=row_mask, other=0.0))
            tl.store(MaxP + stat_offset, tl.math.exp2(s_at - m_i) * inv_l, mask=row_mask)
        else:
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
        if DISTANCE_MMA and not ROWSUM_MMA:
            distance_i -= tl.sum(distance_acc, 1)
        tl.store(Distance + stat_offset, distance_i * inv_l, mask=row_mask)
    if WAAD:
        tl.store(Waad + stat_offset, waad_window - waad_i * inv_l, mask=row_mask)
# fmt: on


_LAUNCHES: dict[tuple, dict] = {}
"""Launch metadata per call shape (grid, tiles, constexpr switches), looked up instead of recomputed in
Python on every call; the key holds the configs generation and ``configs.forward_config`` itself (a
benchmark may replace it)."""


def _launch_plan(q, k, *, causal, wants, has_bias, has_gate, local_window, waad_window) -> dict:
    from workbench_kernels import configs

    key = (tuple(q.shape), k.shape[1], k.shape[2], q.dtype, q.device, causal, wants, has_bias, has_gate,
           local_window, waad_window, configs.generation(), configs.forward_config)  # fmt: skip
    plan = _LAUNCHES.get(key)
    if plan is not None:
        return plan
    import torch

    batch, heads, q_len, head_dim = q.shape
    config = configs.forward_config(head_dim, q.dtype, q.device, with_statistics=bool(wants - {"lse"}))
    plan = {
        "grid": (triton.cdiv(q_len, config["BLOCK_M"]), batch * heads),
        "float_names": ["lse"] + sorted(wants - {"lse", "argmax"}),
        "argmax": "argmax" in wants,
        "near_window": max(local_window if "local_mass" in wants else 0, waad_window if "waad" in wants else 0),
        "scalars": (heads, heads // k.shape[1], q_len, k.shape[2]),
        "constexprs": dict(
            HEAD_DIM=head_dim, BLOCK_D=configs.block_d(head_dim), BLOCK_M=config["BLOCK_M"],
            BLOCK_N=config["BLOCK_N"], CAUSAL=causal, HAS_BIAS=has_bias, HAS_GATE=has_gate,
            ENTROPY="entropy" in wants, MAX="max" in wants, ARGMAX="argmax" in wants,
            SINK="sink_mass" in wants, LOCAL="local_mass" in wants, SPAN="span_mass" in wants,
            DISTANCE="mean_distance" in wants, WAAD="waad" in wants,
            ARGMAX_BRANCH=bool(config.get("ARGMAX_BRANCH", False)),
            ARGMAX_PACKED=bool(config.get("ARGMAX_PACKED", False)),
            DISTANCE_MMA=bool(config.get("DISTANCE_MMA", False)),
            ROWSUM_MMA=bool(config.get("ROWSUM_MMA", False)),
            DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
            num_warps=config["num_warps"], num_stages=config["num_stages"],
        ),
    }  # fmt: skip
    if len(_LAUNCHES) > 256:
        _LAUNCHES.clear()
    _LAUNCHES[key] = plan
    return plan


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
    """Launch the forward. Arguments are already validated by ``workbench_kernels.api``; returns (out, stats).

    One kernel launch; allocates only the outputs (out, one buffer for the fp32 statistics, argmax).
    The bias and the gate are read in their own dtype and strides (converted, clamped and scaled in the
    kernel), so they cost no copy when they are already on the device."""
    import torch

    batch, heads, q_len, head_dim = q.shape
    plan = _launch_plan(
        q, k, causal=causal, wants=frozenset(statistics), has_bias=logit_bias is not None,
        has_gate=head_gate is not None, local_window=local_window, waad_window=waad_window,
    )  # fmt: skip
    out = torch.empty((batch, q_len, heads, head_dim), dtype=q.dtype, device=q.device)
    # One allocation for all fp32 statistics (fewer host-side calls; it matters at 4k tokens).
    float_names = plan["float_names"]
    buffer = torch.empty((len(float_names), batch, heads, q_len), dtype=torch.float32, device=q.device)
    stats = dict(zip(float_names, buffer.unbind(0), strict=True))
    if plan["argmax"]:
        stats["argmax"] = torch.empty((batch, heads, q_len), dtype=torch.int64, device=q.device)
    dummy = stats["lse"]
    if logit_bias is not None:
        bias = logit_bias.to(device=q.device)  # no copy when it is on the device already
        bias_strides = bias.stride()
    else:
        bias, bias_strides = dummy, (0, 0)
    gate = head_gate.to(device=q.device) if head_gate is not None else dummy
    span_start, span_end = span if span is not None else (0, 0)
    attention_forward_kernel[plan["grid"]](
        q, k, v, out, bias, gate,
        stats["lse"], stats.get("entropy", dummy), stats.get("max", dummy), stats.get("argmax", dummy),
        stats.get("sink_mass", dummy), stats.get("local_mass", dummy), stats.get("span_mass", dummy),
        stats.get("mean_distance", dummy), stats.get("waad", dummy),
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        *bias_strides, gate.stride(0) if head_gate is not None else 0,
        *plan["scalars"], scaling * LOG2E_VALUE,
        sink_tokens, local_window, waad_window, plan["near_window"], span_start, span_end,
        **plan["constexprs"],
    )  # fmt: skip
    return out, stats
