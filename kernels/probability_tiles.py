"""Exact attention probabilities for one window: p[head, q0:q1, k0:k1] from Q, K and the saved lse.

For looking at a few rows or a patch of the map without storing T x T: each program recomputes a
BLOCK_M x BLOCK_N patch of s = q.k * scaling + bias and writes exp(s - lse). Cost is proportional to
the window, not to T.
Supports: causal or full attention (masked cells are exactly 0), GQA, fp16 / bf16 / fp32, any head dim
up to 256, any Tq <= Tk (query i at absolute position Tk - Tq + i), the forward's logit bias.
Does not support: gradients, masks other than causal.
"""

from __future__ import annotations

import triton
import triton.language as tl
from workbench_kernels.attention_forward import bias_log2

LOG2E_VALUE = 1.4426950408889634
LOG2E = tl.constexpr(LOG2E_VALUE)


@triton.jit
def probability_tile_kernel(
    Q,
    K,
    Lse,
    Bias,
    Out,
    stride_qb,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kn,
    stride_kd,
    stride_lse_b,
    stride_bias_k,
    stride_ob,
    stride_om,
    Tq,
    Tk,
    q0,
    q1,
    k0,
    k1,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    # Q, K, Lse and Bias already point at the chosen head (and its KV head).
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    batch = tl.program_id(2)
    rows = q0 + pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    keys = k0 + pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_mask = rows < q1
    key_mask = keys < k1
    d_mask = offs_d < HEAD_DIM
    q = tl.load(
        Q + batch.to(tl.int64) * stride_qb + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
        mask=row_mask[:, None] & d_mask[None, :],
        other=0.0,
    )
    k = tl.load(
        K + batch.to(tl.int64) * stride_kb + keys[:, None] * stride_kn + offs_d[None, :] * stride_kd,
        mask=key_mask[:, None] & d_mask[None, :],
        other=0.0,
    )
    lse = tl.load(Lse + batch.to(tl.int64) * stride_lse_b + rows, mask=row_mask, other=0.0)
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
    if HAS_BIAS:
        s += bias_log2(tl.load(Bias + keys * stride_bias_k, mask=key_mask, other=0.0))[None, :]
    p = tl.math.exp2(s - (lse * LOG2E)[:, None])
    visible = row_mask[:, None] & key_mask[None, :]
    if CAUSAL:
        visible = visible & (keys[None, :] <= (rows + Tk - Tq)[:, None])
    p = tl.where(visible, p, 0.0)
    out_rows = rows - q0
    out_keys = keys - k0
    tl.store(
        Out + batch.to(tl.int64) * stride_ob + out_rows[:, None] * stride_om + out_keys[None, :],
        p,
        mask=row_mask[:, None] & key_mask[None, :],
    )


def probability_tile_launch(q, k, lse, *, scaling, head, query_range, key_range, causal, logit_bias):
    """Launch for one head; arguments validated by ``workbench_kernels.api``. Returns (B, q1 - q0, k1 - k0) fp32."""
    import torch
    from workbench_kernels.configs import block_d, tile_config

    batch, heads, q_len, head_dim = q.shape
    kv_heads, k_len = k.shape[1], k.shape[2]
    q0, q1 = query_range
    k0, k1 = key_range
    config = tile_config(q.device, q.dtype)
    out = torch.empty((batch, q1 - q0, k1 - k0), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out
    q_head = q[:, head]
    k_head = k[:, head // (heads // kv_heads)]
    lse_head = lse[:, head]
    # The bias row is read in its own dtype and stride and clamped and scaled in the kernel: no copy.
    bias = logit_bias[head].to(device=q.device) if logit_bias is not None else lse_head
    grid = (triton.cdiv(q1 - q0, config["BLOCK_M"]), triton.cdiv(k1 - k0, config["BLOCK_N"]), batch)
    probability_tile_kernel[grid](
        q_head,
        k_head,
        lse_head,
        bias,
        out,
        q_head.stride(0),
        q_head.stride(1),
        q_head.stride(2),
        k_head.stride(0),
        k_head.stride(1),
        k_head.stride(2),
        lse_head.stride(0),
        bias.stride(0) if logit_bias is not None else 0,
        out.stride(0),
        out.stride(1),
        q_len,
        k_len,
        q0,
        q1,
        k0,
        k1,
        scaling * LOG2E_VALUE,
        HEAD_DIM=head_dim,
        BLOCK_D=block_d(head_dim),
        BLOCK_M=config["BLOCK_M"],
        BLOCK_N=config["BLOCK_N"],
        CAUSAL=causal,
        HAS_BIAS=logit_bias is not None,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=config["num_warps"],
        num_stages=config["num_stages"],
    )
    return out
