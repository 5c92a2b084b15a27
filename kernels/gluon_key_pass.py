"""Hopper key pass in Gluon: warp-specialised, the exponentials of one tile under the q.k wgmma of the next.

The same statistics as ``key_statistics_pass`` (received mass and the FAI window mean; definitions there),
computed FlashAttention-3 style for sm_90 only:
  * one CTA = 2 x 64 keys of one (batch, head); three partitions (``gl.warp_specialize``): a 1-warp TMA
    loader that fills a ring of query tiles (mbarriers ``q_ready`` / ``q_empty``), and two consumer
    warpgroups, each owning 64 of the keys and reading the same query tiles from shared memory;
  * each consumer issues s^T = K (64 x D) . Q^T (D x BLOCK_M) of query block i+1 as an asynchronous
    ``warpgroup_mma`` before it exponentiates block i (``warpgroup_mma_wait(1)``), so the tensor cores run
    under its own exp2 (intra-warpgroup overlap, which Triton 3.6 does not emit: it waits right after
    each wgmma, benchmarks/NOTES.md run 3);
  * PINGPONG (constexpr) also orders the two consumers' wgmma issues alternately through two mbarriers,
    so one warpgroup's exponentials run while the other's product occupies the tensor cores.
p = exp2(s * scale * log2 e + bias - lse * log2 e) is exact (no polynomial); masks: causal diagonal and
rows past Tq, only on the query blocks that need them.

Supports: fp16 / bf16, head dim 64 or 128, causal or full, GQA, Tq <= Tk, logit bias, received and FAI.
Does not support (the caller falls back to the Triton pass, ``key_pass_selection``, with the reason):
fp32, other head dims, the pooled map, any GPU but sm_90, any Triton but the pinned series (the Gluon
API changes between releases; written against Triton 3.6).

Imported only after ``key_pass_selection`` has checked the Triton version and that Gluon imports.
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

LOG2E_VALUE = 1.4426950408889634
LOG2E = gl.constexpr(LOG2E_VALUE)
BLOCK_KEYS = 64  # keys per consumer warpgroup (the wgmma M of one warpgroup)
CONSUMERS = 2


@gluon.jit
def _block_sums(
    s,
    lse2,
    received,
    fai,
    start_m,
    offs_m,
    offs_keys,
    bias2,
    Tq,
    q_offset,
    qk_scale,
    fai_lo,
    fai_hi,
    start_keys,
    BLOCK_M: gl.constexpr,
    BLOCK_KEYS: gl.constexpr,
    CAUSAL: gl.constexpr,
    HAS_BIAS: gl.constexpr,
    FAI: gl.constexpr,
):
    """Sums over one query block of the scores s^T (keys x queries, fp32 in the wgmma layout)."""
    if HAS_BIAS:
        y = s * qk_scale + (bias2[:, None] - lse2[None, :])
    else:
        y = s * qk_scale - lse2[None, :]
    p = gl.exp2(y)
    rows = start_m + offs_m
    i_abs = rows + q_offset
    needs_mask = start_m + BLOCK_M > Tq
    if CAUSAL:
        needs_mask = needs_mask | (start_keys + BLOCK_KEYS - 1 > start_m + q_offset)
    if needs_mask:
        visible = rows[None, :] < Tq
        if CAUSAL:
            visible = visible & (offs_keys[:, None] <= i_abs[None, :])
        p = gl.where(visible, p, 0.0)
    received += gl.sum(p, 1)
    if FAI:
        # Only query blocks with some distance in [fai_lo, fai_hi] to these keys.
        if (start_m + q_offset + BLOCK_M - 1 - start_keys >= fai_lo) & (
            start_m + q_offset - (start_keys + BLOCK_KEYS - 1) <= fai_hi
        ):
            distance = i_abs[None, :] - offs_keys[:, None]
            in_window = (distance >= fai_lo) & (distance <= fai_hi)
            fai += gl.sum(gl.where(in_window, p, 0.0), 1)
    return received, fai


@gluon.jit
def _retire(
    token,
    block,
    lse_smem,
    q_empty,
    received,
    fai,
    lo,
    offs_keys,
    bias2,
    Tq,
    q_offset,
    qk_scale,
    fai_lo,
    fai_hi,
    start_keys,
    OUTSTANDING: gl.constexpr,
    BLOCK_M: gl.constexpr,
    BLOCK_KEYS: gl.constexpr,
    STAGES: gl.constexpr,
    CAUSAL: gl.constexpr,
    HAS_BIAS: gl.constexpr,
    FAI: gl.constexpr,
):
    """Wait until the product of query block ``block`` is done (OUTSTANDING newer ones may still run),
    read its lse from the stage, hand the stage back to the loader, and add the block's sums."""
    s = warpgroup_mma_wait(num_outstanding=OUTSTANDING, deps=(token,))
    query_layout: gl.constexpr = gl.SliceLayout(0, s.type.layout)
    stage = block % STAGES
    lse2 = lse_smem.index(stage).load(query_layout) * LOG2E
    mbarrier.arrive(q_empty.index(stage))
    offs_m = gl.arange(0, BLOCK_M, layout=query_layout)
    return _block_sums(
        s,
        lse2,
        received,
        fai,
        lo + block * BLOCK_M,
        offs_m,
        offs_keys,
        bias2,
        Tq,
        q_offset,
        qk_scale,
        fai_lo,
        fai_hi,
        start_keys,
        BLOCK_M,
        BLOCK_KEYS,
        CAUSAL,
        HAS_BIAS,
        FAI,
    )


@gluon.jit
def _issue(
    k_tile,
    q_smem,
    q_ready,
    my_turn,
    other_turn,
    zero_acc,
    block,
    WG: gl.constexpr,
    HEAD_DIM: gl.constexpr,
    BLOCK_M: gl.constexpr,
    STAGES: gl.constexpr,
    PINGPONG: gl.constexpr,
):
    """Start s^T = K . Q^T of query block number ``block`` once its tile has landed; returns the token.
    PINGPONG: wait for the other warpgroup's previous issue first, then let it issue its next one."""
    stage = block % STAGES
    mbarrier.wait(q_ready.index(stage), (block // STAGES) & 1)
    if PINGPONG:
        # Consumer 0 goes first: its c-th issue waits for the other's (c - 1)-th, consumer 1's c-th for
        # consumer 0's c-th (a fresh barrier passes a wait on parity 1).
        mbarrier.wait(my_turn, (block + 1 - WG) & 1)
    q_tile = q_smem.index(stage).reshape([BLOCK_M, HEAD_DIM]).permute((1, 0))
    token = warpgroup_mma(k_tile, q_tile, zero_acc, use_acc=False, is_async=True)
    if PINGPONG:
        mbarrier.arrive(other_turn)
    return token


@gluon.jit
def _consumer(
    k_smem,
    q_smem,
    lse_smem,
    k_ready,
    q_ready,
    q_empty,
    my_turn,
    other_turn,
    Bias,
    Received,
    Fai,
    bh,
    head,
    start_n,
    lo,
    n_blocks,
    Tq,
    Tk,
    q_offset,
    qk_scale,
    fai_lo,
    fai_hi,
    stride_bias_h,
    WG: gl.constexpr,
    HEAD_DIM: gl.constexpr,
    BLOCK_M: gl.constexpr,
    BLOCK_KEYS: gl.constexpr,
    STAGES: gl.constexpr,
    CAUSAL: gl.constexpr,
    HAS_BIAS: gl.constexpr,
    RECEIVED: gl.constexpr,
    FAI: gl.constexpr,
    PINGPONG: gl.constexpr,
):
    """One warpgroup: keys [start_n + WG * BLOCK_KEYS, + BLOCK_KEYS) against query blocks lo, lo + BLOCK_M, ..."""
    mma_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_M, 16]
    )
    key_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)
    start_keys = start_n + WG * BLOCK_KEYS
    offs_keys = start_keys + gl.arange(0, BLOCK_KEYS, layout=key_layout)
    key_mask = offs_keys < Tk
    if HAS_BIAS:
        bias2 = gl.load(Bias + head.to(gl.int64) * stride_bias_h + offs_keys, mask=key_mask, other=0.0)
    else:
        bias2 = gl.zeros([BLOCK_KEYS], gl.float32, layout=key_layout)
    received = gl.zeros([BLOCK_KEYS], gl.float32, layout=key_layout)
    fai = gl.zeros([BLOCK_KEYS], gl.float32, layout=key_layout)
    zero_acc = gl.zeros([BLOCK_KEYS, BLOCK_M], gl.float32, layout=mma_layout)

    mbarrier.wait(k_ready, 0)
    k_tile = k_smem.index(WG).reshape([BLOCK_KEYS, HEAD_DIM])

    # Two accumulators, a and b, take turns (blocks 0, 2, 4, ... in a): the loop is unrolled by two so
    # that the one in flight is never copied (a copy of an in-flight accumulator makes ptxas serialise
    # every wgmma, warning C7514).
    # fmt: off
    s_a = _issue(k_tile, q_smem, q_ready, my_turn, other_turn, zero_acc, 0, WG, HEAD_DIM, BLOCK_M, STAGES, PINGPONG)
    for pair in range((n_blocks - 1) // 2):
        i = 2 * pair
        s_b = _issue(k_tile, q_smem, q_ready, my_turn, other_turn, zero_acc, i + 1, WG, HEAD_DIM, BLOCK_M, STAGES,
                     PINGPONG)
        received, fai = _retire(s_a, i, lse_smem, q_empty, received, fai, lo, offs_keys, bias2, Tq, q_offset,
                                qk_scale, fai_lo, fai_hi, start_keys, 1, BLOCK_M, BLOCK_KEYS, STAGES, CAUSAL,
                                HAS_BIAS, FAI)
        s_a = _issue(k_tile, q_smem, q_ready, my_turn, other_turn, zero_acc, i + 2, WG, HEAD_DIM, BLOCK_M, STAGES,
                     PINGPONG)
        received, fai = _retire(s_b, i + 1, lse_smem, q_empty, received, fai, lo, offs_keys, bias2, Tq, q_offset,
                                qk_scale, fai_lo, fai_hi, start_keys, 1, BLOCK_M, BLOCK_KEYS, STAGES, CAUSAL,
                                HAS_BIAS, FAI)
    last = n_blocks - 1  # a holds block 2 * pairs, in flight
    if last % 2 == 1:
        s_b = _issue(k_tile, q_smem, q_ready, my_turn, other_turn, zero_acc, last, WG, HEAD_DIM, BLOCK_M, STAGES,
                     PINGPONG)
        received, fai = _retire(s_a, last - 1, lse_smem, q_empty, received, fai, lo, offs_keys, bias2, Tq,
                                q_offset, qk_scale, fai_lo, fai_hi, start_keys, 1, BLOCK_M, BLOCK_KEYS, STAGES,
                                CAUSAL, HAS_BIAS, FAI)
        received, fai = _retire(s_b, last, lse_smem, q_empty, received, fai, lo, offs_keys, bias2, Tq, q_offset,
                                qk_scale, fai_lo, fai_hi, start_keys, 0, BLOCK_M, BLOCK_KEYS, STAGES, CAUSAL,
                                HAS_BIAS, FAI)
    else:
        received, fai = _retire(s_a, last, lse_smem, q_empty, received, fai, lo, offs_keys, bias2, Tq, q_offset,
                                qk_scale, fai_lo, fai_hi, start_keys, 0, BLOCK_M, BLOCK_KEYS, STAGES, CAUSAL,
                                HAS_BIAS, FAI)
    # fmt: on

    out_offset = bh.to(gl.int64) * Tk + offs_keys
    if RECEIVED:
        gl.store(Received + out_offset, received, mask=key_mask)
    if FAI:
        window_first = gl.maximum(offs_keys + fai_lo, q_offset)
        window_last = gl.minimum(offs_keys + fai_hi, Tk - 1)
        count = gl.maximum(window_last - window_first + 1, 0)
        fai = gl.where(count > 0, fai / gl.maximum(count, 1).to(gl.float32), 0.0)
        gl.store(Fai + out_offset, fai, mask=key_mask)


@gluon.jit
def _loader(
    q_desc,
    k_desc,
    lse_desc,
    k_smem,
    q_smem,
    lse_smem,
    k_ready,
    q_ready,
    q_empty,
    bh,
    kv_bh,
    start_n,
    lo,
    n_blocks,
    Tq,
    BLOCK_M: gl.constexpr,
    BLOCK_KEYS: gl.constexpr,
    STAGES: gl.constexpr,
):
    """One warp: both key tiles once, then query tiles and their lse through a ring of STAGES buffers."""
    mbarrier.expect(k_ready, 2 * k_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(k_desc, [kv_bh, start_n, 0], k_ready, k_smem.index(0))
    tma.async_copy_global_to_shared(k_desc, [kv_bh, start_n + BLOCK_KEYS, 0], k_ready, k_smem.index(1))
    for i in range(n_blocks):
        stage = i % STAGES
        # A stage is free once both consumers released its previous tile (fresh barriers pass parity 1).
        mbarrier.wait(q_empty.index(stage), ((i // STAGES) & 1) ^ 1)
        mbarrier.expect(q_ready.index(stage), q_desc.block_type.nbytes + lse_desc.block_type.nbytes)
        start_m = lo + i * BLOCK_M
        tma.async_copy_global_to_shared(q_desc, [bh, start_m, 0], q_ready.index(stage), q_smem.index(stage))
        # lse is read flat (B * H * Tq): entries past this head's Tq belong to rows the consumers mask.
        tma.async_copy_global_to_shared(
            lse_desc, [bh * Tq + start_m], q_ready.index(stage), lse_smem.index(stage)
        )


@gluon.jit
def gluon_key_pass_kernel(
    q_desc,
    k_desc,
    lse_desc,
    Bias,
    Received,
    Fai,
    H,
    heads_per_kv,
    Tq,
    Tk,
    qk_scale,
    fai_lo,
    fai_hi,
    stride_bias_h,
    HEAD_DIM: gl.constexpr,
    BLOCK_M: gl.constexpr,
    STAGES: gl.constexpr,
    CAUSAL: gl.constexpr,
    HAS_BIAS: gl.constexpr,
    RECEIVED: gl.constexpr,
    FAI: gl.constexpr,
    PINGPONG: gl.constexpr,
    CONSUMER_REGS: gl.constexpr,
    LOADER_REGS: gl.constexpr,
):
    """Grid (cdiv(Tk, 128), B * H). q_desc: (B * H, Tq, D) blocks [1, BLOCK_M, D]; k_desc: (B * Hkv, Tk, D)
    blocks [1, 64, D]; lse_desc: the forward's lse flat (B * H * Tq,) fp32 natural log, blocks [BLOCK_M];
    outputs (B * H, Tk) fp32."""
    BLOCK_KEYS: gl.constexpr = k_desc.block_type.shape[1]
    pid_n = gl.program_id(0)
    bh = gl.program_id(1)
    batch = bh // H
    head = bh % H
    kv_bh = batch * (H // heads_per_kv) + head // heads_per_kv
    start_n = pid_n * (2 * BLOCK_KEYS)
    q_offset = Tk - Tq
    if CAUSAL:
        # Rows before the first one at absolute position start_n see none of these keys.
        lo = (gl.maximum(start_n - q_offset, 0) // BLOCK_M) * BLOCK_M
    else:
        lo = 0
    n_blocks = gl.cdiv(Tq - lo, BLOCK_M)

    k_smem = gl.allocate_shared_memory(k_desc.dtype, [2] + k_desc.block_type.shape, k_desc.layout)
    q_smem = gl.allocate_shared_memory(q_desc.dtype, [STAGES] + q_desc.block_type.shape, q_desc.layout)
    lse_smem = gl.allocate_shared_memory(
        lse_desc.dtype, [STAGES] + lse_desc.block_type.shape, lse_desc.layout
    )
    k_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    q_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    turns = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(k_ready, count=1)
    for stage in gl.static_range(STAGES):
        mbarrier.init(q_ready.index(stage), count=1)
        mbarrier.init(q_empty.index(stage), count=2)
    mbarrier.init(turns.index(0), count=1)
    mbarrier.init(turns.index(1), count=1)
    fence_async_shared()  # the initialised barriers visible to the TMA unit before the loader uses them

    # The argument tuples are written out in the call: a tuple held in a variable loses its constexprs.
    gl.warp_specialize(
        [
            (_consumer, (k_smem, q_smem, lse_smem, k_ready, q_ready, q_empty, turns.index(0), turns.index(1), Bias,
                         Received, Fai, bh, head, start_n, lo, n_blocks, Tq, Tk, q_offset, qk_scale, fai_lo,
                         fai_hi, stride_bias_h, gl.constexpr(0), HEAD_DIM, BLOCK_M, BLOCK_KEYS, STAGES, CAUSAL,
                         HAS_BIAS, RECEIVED, FAI, PINGPONG)),
            (_consumer, (k_smem, q_smem, lse_smem, k_ready, q_ready, q_empty, turns.index(1), turns.index(0), Bias,
                         Received, Fai, bh, head, start_n, lo, n_blocks, Tq, Tk, q_offset, qk_scale, fai_lo,
                         fai_hi, stride_bias_h, gl.constexpr(1), HEAD_DIM, BLOCK_M, BLOCK_KEYS, STAGES, CAUSAL,
                         HAS_BIAS, RECEIVED, FAI, PINGPONG)),
            (_loader, (q_desc, k_desc, lse_desc, k_smem, q_smem, lse_smem, k_ready, q_ready, q_empty, bh, kv_bh,
                       start_n, lo, n_blocks, Tq, BLOCK_M, BLOCK_KEYS, STAGES)),
        ],
        [4, 1],
        [CONSUMER_REGS, LOADER_REGS],
    )  # fmt: skip

    mbarrier.invalidate(k_ready)
    for stage in gl.static_range(STAGES):
        mbarrier.invalidate(q_ready.index(stage))
        mbarrier.invalidate(q_empty.index(stage))
    mbarrier.invalidate(turns.index(0))
    mbarrier.invalidate(turns.index(1))


def _heads_flat(x):
    """(B, H, T, D) as a (B * H, T, D) view when batch and head strides allow one (contiguous, or HF's
    (B, T, H, D) transposed, or B == 1), else a contiguous copy; TMA needs the last stride to be 1."""
    batch, heads, length, dim = x.shape
    stride_b, stride_h, stride_t, stride_d = x.stride()
    if stride_d != 1 or (batch > 1 and stride_b != heads * stride_h):
        x = x.contiguous()
        stride_b, stride_h, stride_t, stride_d = x.stride()
    return x.as_strided((batch * heads, length, dim), (stride_h, stride_t, 1))


def gluon_key_statistics_launch(
    q, k, lse, *, scaling, causal, logit_bias, received, fai_window, pingpong=False
):
    """Launch the Gluon key pass; arguments as ``key_statistics_pass.key_statistics_launch`` (validated by
    ``workbench_kernels.api``, the call checked by ``key_pass_selection.call_unsupported``). No pooled map."""
    import torch
    import triton
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    from workbench_kernels.key_pass_selection import gluon_launch_config

    batch, heads, q_len, head_dim = q.shape
    kv_heads, k_len = k.shape[1], k.shape[2]
    config = gluon_launch_config(head_dim)
    block_m = config["BLOCK_M"]
    element = gl.bfloat16 if q.dtype == torch.bfloat16 else gl.float16
    q_flat, k_flat = _heads_flat(q), _heads_flat(k)
    q_block, k_block = [1, block_m, head_dim], [1, BLOCK_KEYS, head_dim]
    q_desc = TensorDescriptor(
        q_flat, list(q_flat.shape), list(q_flat.stride()), q_block,
        gl.NVMMASharedLayout.get_default_for(q_block, element),
    )  # fmt: skip
    k_desc = TensorDescriptor(
        k_flat, list(k_flat.shape), list(k_flat.stride()), k_block,
        gl.NVMMASharedLayout.get_default_for(k_block, element),
    )  # fmt: skip
    lse_flat = lse.to(device=q.device, dtype=torch.float32).contiguous().reshape(-1)
    lse_desc = TensorDescriptor(
        lse_flat,
        [lse_flat.numel()],
        [1],
        [block_m],
        gl.NVMMASharedLayout.get_default_for([block_m], gl.float32),
    )
    empty = torch.empty(0, dtype=torch.float32, device=q.device)
    received_out = (
        torch.empty((batch, heads, k_len), dtype=torch.float32, device=q.device) if received else empty
    )
    fai_out = (
        torch.empty((batch, heads, k_len), dtype=torch.float32, device=q.device)
        if fai_window is not None
        else empty
    )
    if logit_bias is not None:
        bias = (
            logit_bias.to(device=q.device, dtype=torch.float32).clamp(min=-1.0e30) * LOG2E_VALUE
        ).contiguous()
    else:
        bias = empty
    fai_lo, fai_hi = fai_window if fai_window is not None else (0, 0)
    grid = (triton.cdiv(k_len, CONSUMERS * BLOCK_KEYS), batch * heads)
    gluon_key_pass_kernel[grid](
        q_desc,
        k_desc,
        lse_desc,
        bias,
        received_out,
        fai_out,
        heads,
        heads // kv_heads,
        q_len,
        k_len,
        float(scaling) * LOG2E_VALUE,
        int(fai_lo),
        int(fai_hi),
        bias.stride(0) if logit_bias is not None else 0,
        HEAD_DIM=head_dim,
        BLOCK_M=block_m,
        STAGES=config["STAGES"],
        CAUSAL=bool(causal),
        HAS_BIAS=logit_bias is not None,
        RECEIVED=bool(received),
        FAI=fai_window is not None,
        PINGPONG=bool(pingpong),
        CONSUMER_REGS=config["CONSUMER_REGS"],
        LOADER_REGS=config["LOADER_REGS"],
        num_warps=config["num_warps"],
    )
    results = {}
    if received:
        results["received"] = received_out
    if fai_window is not None:
        results["fai"] = fai_out
    return results
