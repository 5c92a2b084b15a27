"""Key-side statistics from the saved row log-sum-exp: received mass, FAI window mass, pooled map.

Second pass after ``attention_forward``: one program per (key block, batch * head) walks the query
blocks that can see its keys, recomputes s = q.k (plus bias) and p = exp(s - lse) exactly, and sums
over queries. received and FAI accumulate in registers (no atomics); the pooled map is flushed once
per (row cell, column cell) a program touches, through a scalar atomic add. Nothing T x T is stored.

Supports: causal or full attention, native GQA, fp16 / bf16 (fp32 for tests), any head dim up to 256,
any Tq <= Tk (query i at absolute position Tk - Tq + i), the same per-(head, key) logit bias as the
forward (pass the same one, or the probabilities will not be those of the forward).
Definitions (p over visible keys of each row):
    received[j] = sum_i p_ij (causal: only rows with i_abs >= j see key j)
    fai[j]      = mean of p_ij over rows with i_abs in [j + lo, min(Tk - 1, j + hi)]; the mean divides
                  by the number of such rows present (all of them when Tq == Tk), 0 if none
    pooled[a,c] = mean of p_ij over cell a (rows by i_abs) x cell c (keys), cell = ceil(Tk / cells);
                  zeros above the diagonal count; meaningful for Tq == Tk.
Does not support: gradients, masks other than causal, pooled maps with more than 256 cells a side.
Speed switches (constexpr, exact; kernels/configs.py): EXP_POLY (every other query column's exp2 as an
FMA polynomial, rel. error 2.7e-6, to offload the MUFU pipe), PIPELINE (next block's q.k issued first).
"""

from __future__ import annotations

import triton
import triton.language as tl
from workbench_kernels.attention_forward import bias_log2

LOG2E_VALUE = 1.4426950408889634
LOG2E = tl.constexpr(LOG2E_VALUE)


@triton.jit
def _exp2_polynomial(y):
    """2^y for y <= ~0 on the FMA units (Cody-Waite split plus a degree-4 polynomial fitted to the
    relative error, at most 2.7e-6, against about 1e-7 for ex2.approx): lets part of the exponentials
    leave the MUFU pipe (16 per clock per SM, against 128 FMAs). y below -126 gives about 2^-126
    instead of 0; callers mask invisible entries themselves."""
    y = tl.maximum(y, -126.0)
    shifted = y + 12582912.0  # 1.5 * 2^23: round(y) lands in the low mantissa bits
    whole = shifted - 12582912.0
    f = y - whole  # in [-0.5, 0.5]
    r = 9.5605105e-3
    r = r * f + 5.5917040e-2
    r = r * f + 2.4024981e-1
    r = r * f + 6.9312197e-1
    r = r * f + 9.9999917e-1
    bits = r.to(tl.uint32, bitcast=True) + (shifted.to(tl.uint32, bitcast=True) << 23)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _cell_count(row_cell, col, cell, Tk, q_offset):
    """Number of (i, j) pairs of pooled cell (row_cell, col) inside the matrix, at least 1, as fp32
    (rows by absolute position from q_offset on); the same int64 product as the PyTorch reference."""
    row_start = row_cell.to(tl.int64) * cell
    col_start = col.to(tl.int64) * cell
    rows = tl.maximum(tl.minimum(row_start + cell, Tk) - tl.maximum(row_start, q_offset), 0)
    cols = tl.maximum(tl.minimum(col_start + cell, Tk) - col_start, 0)
    return tl.maximum((rows * cols).to(tl.float32), 1.0)


@triton.jit
def _flush_pooled(
    pooled_base,
    pool_vec,
    row_cell,
    start_n,
    offs_kn,
    Tk,
    q_offset,
    cell,
    cells,
    BLOCK_N: tl.constexpr,
    COL_CELLS: tl.constexpr,
    OWNED: tl.constexpr,
):
    """Add the per-key sums of one row cell into pooled[row_cell, column cells of this key block].
    OWNED (cell divides BLOCK_N: this program is the only one that sums into these column cells, and
    flushes each row cell once): store the mean itself, sum / count, instead of an atomic add."""
    if row_cell >= 0:
        first_col = start_n // cell
        last_col = (tl.minimum(start_n + BLOCK_N, Tk) - 1) // cell
        key_cell = offs_kn // cell
        for r in tl.static_range(COL_CELLS):
            col = first_col + r
            if col <= last_col:
                total = tl.sum(tl.where((key_cell == col) & (offs_kn < Tk), pool_vec, 0.0), 0)
                if OWNED:
                    mean = tl.math.div_rn(total, _cell_count(row_cell, col, cell, Tk, q_offset))
                    tl.store(pooled_base + row_cell * cells + col, mean)
                else:
                    tl.atomic_add(pooled_base + row_cell * cells + col, total)


@triton.jit
def _zero_pooled(pooled_base, row_lo, row_hi, col_lo, col_hi,
                 ZERO_ROWS: tl.constexpr, ZERO_COLS: tl.constexpr, cells):  # fmt: skip
    """pooled[rows [row_lo, row_hi), cols [col_lo, col_hi)] = 0 (cells a program owns but never sums into)."""
    for a0 in range(row_lo, row_hi, ZERO_ROWS):
        rows = a0 + tl.arange(0, ZERO_ROWS)
        for c0 in range(col_lo, col_hi, ZERO_COLS):
            cols = c0 + tl.arange(0, ZERO_COLS)
            mask = (rows[:, None] < row_hi) & (cols[None, :] < col_hi)
            tl.store(pooled_base + rows[:, None] * cells + cols[None, :],
                     tl.zeros([ZERO_ROWS, ZERO_COLS], dtype=tl.float32), mask=mask)  # fmt: skip


# fmt: off
@triton.jit
def _load_query_block(q_base, lse_base, start_m, offs_m, offs_d, stride_qm, stride_qd, Tq,
                      HEAD_DIM: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr):
    """q rows [start_m, start_m + BLOCK_M) and their lse in log2 units."""
    rows = start_m + offs_m
    q_ptrs = q_base + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd
    if MASKED:
        q = tl.load(q_ptrs, mask=(rows[:, None] < Tq) & (offs_d[None, :] < HEAD_DIM), other=0.0)
        lse = tl.load(lse_base + rows, mask=rows < Tq, other=0.0)
    elif EVEN_D:
        q = tl.load(q_ptrs)
        lse = tl.load(lse_base + rows)
    else:
        q = tl.load(q_ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
        lse = tl.load(lse_base + rows)
    return q, lse * LOG2E


@triton.jit
def _key_block(
    received, fai, pool_vec, current_row_cell, s, lse2, start_m,
    bias, pooled_base, start_n, offs_kn, offs_m, Tq, Tk, q_offset, qk_scale, fai_lo, fai_hi, cell, cells,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    HAS_BIAS: tl.constexpr, FAI: tl.constexpr, POOLED: tl.constexpr, ROW_CELLS: tl.constexpr,
    COL_CELLS: tl.constexpr, EXP_POLY: tl.constexpr, OWNED: tl.constexpr,
):
    """Sums over one query block from its raw transposed scores s = k . q^T (keys x queries)."""
    rows = start_m + offs_m
    s = s * qk_scale
    if HAS_BIAS:
        s += bias[:, None]
    y = s - lse2[None, :]
    if EXP_POLY:
        # Every other query column on the FMA units; the accumulator layout keeps column pairs in one
        # thread, so the split and join move no data.
        y_even, y_odd = tl.split(tl.reshape(y, [BLOCK_N, BLOCK_M // 2, 2]))
        p = tl.reshape(tl.join(tl.math.exp2(y_even), _exp2_polynomial(y_odd)), [BLOCK_N, BLOCK_M])
    else:
        p = tl.math.exp2(y)
    i_abs = rows + q_offset
    if MASKED:
        visible = rows[None, :] < Tq
        if CAUSAL:
            visible = visible & (offs_kn[:, None] <= i_abs[None, :])
        p = tl.where(visible, p, 0.0)
    column_sum = tl.sum(p, 1)
    received += column_sum
    if FAI:
        # Skip query blocks whose distances to these keys all fall outside [fai_lo, fai_hi].
        if (start_m + q_offset + BLOCK_M - 1 - start_n >= fai_lo) & (
            start_m + q_offset - (start_n + BLOCK_N - 1) <= fai_hi
        ):
            distance = i_abs[None, :] - offs_kn[:, None]
            in_window = (distance >= fai_lo) & (distance <= fai_hi)
            fai += tl.sum(tl.where(in_window, p, 0.0), 1)
    if POOLED:
        last_row = tl.minimum(start_m + BLOCK_M, Tq) - 1
        first_cell = (start_m + q_offset) // cell
        last_cell = (last_row + q_offset) // cell
        if first_cell == last_cell:
            if first_cell != current_row_cell:
                _flush_pooled(pooled_base, pool_vec, current_row_cell, start_n, offs_kn, Tk, q_offset, cell,
                              cells, BLOCK_N, COL_CELLS, OWNED)
                pool_vec = tl.zeros_like(pool_vec)
                current_row_cell = first_cell
            pool_vec += column_sum
        else:
            row_cell = i_abs // cell
            for r in tl.static_range(ROW_CELLS):
                a = first_cell + r
                if a <= last_cell:
                    part = tl.sum(tl.where(row_cell[None, :] == a, p, 0.0), 1)
                    if a != current_row_cell:
                        _flush_pooled(pooled_base, pool_vec, current_row_cell, start_n, offs_kn, Tk, q_offset,
                                      cell, cells, BLOCK_N, COL_CELLS, OWNED)
                        pool_vec = tl.zeros_like(pool_vec)
                        current_row_cell = a
                    pool_vec += part
    return received, fai, pool_vec, current_row_cell


@triton.jit
def _key_steps(
    received, fai, pool_vec, current_row_cell, k, bias, q_base, lse_base, pooled_base, stride_qm, stride_qd,
    lo, hi, start_n, offs_kn, offs_m, offs_d, Tq, Tk, q_offset, qk_scale, fai_lo, fai_hi, cell, cells,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, FAI: tl.constexpr, POOLED: tl.constexpr,
    ROW_CELLS: tl.constexpr, COL_CELLS: tl.constexpr, EVEN_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
    EXP_POLY: tl.constexpr, PIPELINE: tl.constexpr, OWNED: tl.constexpr,
):
    """Query blocks [lo, hi) (multiples of BLOCK_M). PIPELINE issues block n+1's q.k product before
    block n's exponentials, so the tensor cores can run under them; the last step recomputes a block
    that is already counted and drops it."""
    if PIPELINE:
        if lo < hi:
            q, lse_next = _load_query_block(q_base, lse_base, lo, offs_m, offs_d, stride_qm, stride_qd, Tq,
                                            HEAD_DIM, MASKED, EVEN_D)
            s_next = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION)
            for start_m in range(lo, hi, BLOCK_M):
                s = s_next
                lse2 = lse_next
                following = tl.minimum(start_m + BLOCK_M, hi - BLOCK_M)
                q, lse_next = _load_query_block(q_base, lse_base, following, offs_m, offs_d, stride_qm,
                                                stride_qd, Tq, HEAD_DIM, MASKED, EVEN_D)
                s_next = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION)
                received, fai, pool_vec, current_row_cell = _key_block(
                    received, fai, pool_vec, current_row_cell, s, lse2, start_m,
                    bias, pooled_base, start_n, offs_kn, offs_m, Tq, Tk, q_offset, qk_scale, fai_lo, fai_hi,
                    cell, cells, BLOCK_M, BLOCK_N, MASKED, CAUSAL, HAS_BIAS, FAI, POOLED, ROW_CELLS,
                    COL_CELLS, EXP_POLY, OWNED,
                )
    else:
        for start_m in range(lo, hi, BLOCK_M):
            q, lse2 = _load_query_block(q_base, lse_base, start_m, offs_m, offs_d, stride_qm, stride_qd, Tq,
                                        HEAD_DIM, MASKED, EVEN_D)
            # Transposed scores: keys on axis 0, queries on axis 1, so sums over queries are row sums.
            s = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION)
            received, fai, pool_vec, current_row_cell = _key_block(
                received, fai, pool_vec, current_row_cell, s, lse2, start_m,
                bias, pooled_base, start_n, offs_kn, offs_m, Tq, Tk, q_offset, qk_scale, fai_lo, fai_hi,
                cell, cells, BLOCK_M, BLOCK_N, MASKED, CAUSAL, HAS_BIAS, FAI, POOLED, ROW_CELLS,
                COL_CELLS, EXP_POLY, OWNED,
            )
    return received, fai, pool_vec, current_row_cell
# fmt: on


@triton.jit
def key_statistics_kernel(
    Q,
    K,
    Lse,
    Bias,
    Received,
    Fai,
    Pooled,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_bias_h,
    stride_bias_k,
    H,
    heads_per_kv,
    Tq,
    Tk,
    qk_scale,
    fai_lo,
    fai_hi,
    cell,
    cells,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    RECEIVED: tl.constexpr,
    FAI: tl.constexpr,
    POOLED: tl.constexpr,
    ROW_CELLS: tl.constexpr,
    COL_CELLS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    EXP_POLY: tl.constexpr,
    PIPELINE: tl.constexpr,
    POOLED_OWNED: tl.constexpr,
    ZERO_ROWS: tl.constexpr,
    ZERO_COLS: tl.constexpr,
    QUERY_SPLIT: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    batch = pid_bh // H
    head = pid_bh % H
    kv_head = head // heads_per_kv
    EVEN_D: tl.constexpr = BLOCK_D == HEAD_DIM
    q_offset = Tk - Tq

    start_n = pid_n * BLOCK_N
    offs_kn = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    key_mask = offs_kn < Tk

    k_base = K + batch.to(tl.int64) * stride_kb + kv_head.to(tl.int64) * stride_kh
    k = tl.load(
        k_base + offs_kn[:, None] * stride_kn + offs_d[None, :] * stride_kd,
        mask=key_mask[:, None] & (offs_d[None, :] < HEAD_DIM),
        other=0.0,
    )
    if HAS_BIAS:
        bias = bias_log2(
            tl.load(
                Bias + head.to(tl.int64) * stride_bias_h + offs_kn * stride_bias_k, mask=key_mask, other=0.0
            )
        )
    else:
        bias = tl.zeros([BLOCK_N], dtype=tl.float32)
    q_base = Q + batch.to(tl.int64) * stride_qb + head.to(tl.int64) * stride_qh
    lse_base = Lse + pid_bh.to(tl.int64) * Tq
    pooled_base = Pooled + pid_bh.to(tl.int64) * cells * cells

    q_blocks_end = tl.cdiv(Tq, BLOCK_M) * BLOCK_M
    full_end = (Tq // BLOCK_M) * BLOCK_M
    if CAUSAL:
        # Rows before first_row cannot see this key block; rows from diag_end on see all of it.
        first_row = tl.maximum(start_n - q_offset, 0)
        lo = (first_row // BLOCK_M) * BLOCK_M
        diag_end = tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - q_offset, 0), BLOCK_M) * BLOCK_M
        diag_end = tl.minimum(tl.maximum(diag_end, lo), q_blocks_end)
    else:
        lo = 0
        diag_end = 0
    tail_start = tl.maximum(diag_end, full_end)
    if QUERY_SPLIT > 1:
        # Split over the query blocks of this key block (short T: more programs than key blocks x heads
        # fill the SMs): part program_id(2) of QUERY_SPLIT walks its share of [lo, q_blocks_end).
        share = tl.cdiv((q_blocks_end - lo) // BLOCK_M, QUERY_SPLIT) * BLOCK_M
        part_lo = lo + tl.program_id(2) * share
        part_hi = tl.minimum(part_lo + share, q_blocks_end)
        first_lo, first_hi = part_lo, tl.minimum(diag_end, part_hi)
        mid_lo, mid_hi = tl.maximum(diag_end, part_lo), tl.minimum(full_end, part_hi)
        tail_lo, tail_hi = tl.maximum(tail_start, part_lo), part_hi
    else:
        first_lo, first_hi = lo, diag_end
        mid_lo, mid_hi = diag_end, full_end
        tail_lo, tail_hi = tail_start, q_blocks_end

    received = tl.zeros([BLOCK_N], dtype=tl.float32)
    fai = tl.zeros([BLOCK_N], dtype=tl.float32)
    pool_vec = tl.zeros([BLOCK_N], dtype=tl.float32)
    current_row_cell = pid_n * 0 - 1

    received, fai, pool_vec, current_row_cell = _key_steps(
        received,
        fai,
        pool_vec,
        current_row_cell,
        k,
        bias,
        q_base,
        lse_base,
        pooled_base,
        stride_qm,
        stride_qd,
        first_lo,
        first_hi,
        start_n,
        offs_kn,
        offs_m,
        offs_d,
        Tq,
        Tk,
        q_offset,
        qk_scale,
        fai_lo,
        fai_hi,
        cell,
        cells,
        HEAD_DIM,
        BLOCK_M,
        BLOCK_N,
        True,
        CAUSAL,
        HAS_BIAS,
        FAI,
        POOLED,
        ROW_CELLS,
        COL_CELLS,
        EVEN_D,
        DOT_PRECISION,
        EXP_POLY,
        PIPELINE,
        POOLED_OWNED,
    )
    received, fai, pool_vec, current_row_cell = _key_steps(
        received,
        fai,
        pool_vec,
        current_row_cell,
        k,
        bias,
        q_base,
        lse_base,
        pooled_base,
        stride_qm,
        stride_qd,
        mid_lo,
        mid_hi,
        start_n,
        offs_kn,
        offs_m,
        offs_d,
        Tq,
        Tk,
        q_offset,
        qk_scale,
        fai_lo,
        fai_hi,
        cell,
        cells,
        HEAD_DIM,
        BLOCK_M,
        BLOCK_N,
        False,
        CAUSAL,
        HAS_BIAS,
        FAI,
        POOLED,
        ROW_CELLS,
        COL_CELLS,
        EVEN_D,
        DOT_PRECISION,
        EXP_POLY,
        PIPELINE,
        POOLED_OWNED,
    )
    received, fai, pool_vec, current_row_cell = _key_steps(
        received,
        fai,
        pool_vec,
        current_row_cell,
        k,
        bias,
        q_base,
        lse_base,
        pooled_base,
        stride_qm,
        stride_qd,
        tail_lo,
        tail_hi,
        start_n,
        offs_kn,
        offs_m,
        offs_d,
        Tq,
        Tk,
        q_offset,
        qk_scale,
        fai_lo,
        fai_hi,
        cell,
        cells,
        HEAD_DIM,
        BLOCK_M,
        BLOCK_N,
        True,
        CAUSAL,
        HAS_BIAS,
        FAI,
        POOLED,
        ROW_CELLS,
        COL_CELLS,
        EVEN_D,
        DOT_PRECISION,
        EXP_POLY,
        PIPELINE,
        POOLED_OWNED,
    )
    if POOLED:
        _flush_pooled(
            pooled_base,
            pool_vec,
            current_row_cell,
            start_n,
            offs_kn,
            Tk,
            q_offset,
            cell,
            cells,
            BLOCK_N,
            COL_CELLS,
            POOLED_OWNED,
        )
        if POOLED_OWNED:
            # No zero-filled map to add into: this program also writes the zeros of its columns (row cells
            # before its first query block and past the last key), and the last program the columns past
            # the last key, so every cell is stored exactly once and the map needs no memset.
            first_col = start_n // cell
            col_end = (tl.minimum(start_n + BLOCK_N, Tk) - 1) // cell + 1
            used_cells = (Tk - 1) // cell + 1
            _zero_pooled(
                pooled_base, 0, (lo + q_offset) // cell, first_col, col_end, ZERO_ROWS, ZERO_COLS, cells
            )
            _zero_pooled(pooled_base, used_cells, cells, first_col, col_end, ZERO_ROWS, ZERO_COLS, cells)
            if pid_n == tl.num_programs(0) - 1:
                _zero_pooled(pooled_base, 0, cells, used_cells, cells, ZERO_ROWS, ZERO_COLS, cells)

    out_offset = pid_bh.to(tl.int64) * Tk + offs_kn
    if RECEIVED:
        if QUERY_SPLIT > 1:  # onto zeros: with two parts 0 + a + b = 0 + b + a, so still deterministic
            tl.atomic_add(Received + out_offset, received, mask=key_mask)
        else:
            tl.store(Received + out_offset, received, mask=key_mask)
    if FAI:
        window_first = tl.maximum(offs_kn + fai_lo, q_offset)
        window_last = tl.minimum(offs_kn + fai_hi, Tk - 1)
        count = tl.maximum(window_last - window_first + 1, 0)
        fai = tl.where(count > 0, fai / tl.maximum(count, 1).to(tl.float32), 0.0)
        if QUERY_SPLIT > 1:
            tl.atomic_add(Fai + out_offset, fai, mask=key_mask)
        else:
            tl.store(Fai + out_offset, fai, mask=key_mask)


@triton.jit
def pooled_mean_kernel(Pooled, Tq, Tk, cell, cells, BLOCK: tl.constexpr):
    """pooled <- pooled / count in place, for maps whose cells several programs added into (cell does not
    divide BLOCK_N). One program per BLOCK cells of one (batch, head); counts computed, not stored."""
    pid = tl.program_id(0)
    base = Pooled + tl.program_id(1).to(tl.int64) * cells * cells
    index = pid * BLOCK + tl.arange(0, BLOCK)
    mask = index < cells * cells
    total = tl.load(base + index, mask=mask, other=0.0)
    count = _cell_count(index // cells, index % cells, cell, Tk, Tk - Tq)
    tl.store(base + index, tl.math.div_rn(total, count), mask=mask)


def _cells_touched(block: int, cell: int) -> int:
    """Most cells of width ``cell`` that ``block`` consecutive indices can touch."""
    return -(-(block - 1) // cell) + 1


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


_LAUNCHES: dict[tuple, dict] = {}
"""Launch metadata per call shape (grids, tiles, constexpr switches): a dict lookup instead of
recomputing them in Python on every call. The key holds everything they depend on, including the
configs generation (``configs.override`` / ``switches`` change it) and ``configs.key_config`` itself."""
_MEAN_BLOCK = 256


def _launch_plan(q, k, *, causal, has_bias, received, fai, pooled_cells) -> dict:
    from workbench_kernels import configs

    batch, heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    key = (tuple(q.shape), k.shape[1], k_len, q.dtype, q.device, causal, has_bias, received, fai,
           pooled_cells, configs.generation(), configs.key_config)  # fmt: skip
    plan = _LAUNCHES.get(key)
    if plan is not None:
        return plan
    import torch

    config = configs.key_config(head_dim, q.dtype, q.device)
    block_m, block_n = config["BLOCK_M"], config["BLOCK_N"]
    cells = min(int(pooled_cells), k_len) if pooled_cells else 0
    cell = -(-k_len // cells) if cells else 1
    split = int(config.get("QUERY_SPLIT", 1))
    if split not in (1, 2, 4):
        raise ValueError(f"QUERY_SPLIT={split}; choose 1 (off), 2 or 4")
    # A split adds partial sums (atomics) into zeroed outputs, so every pooled cell may get two parts.
    owned = bool(cells) and block_n % cell == 0 and split == 1
    col_cells = _cells_touched(block_n, cell) if cells else 1
    zero_cols = min(_next_power_of_two(col_cells), 64)
    plan = {
        "grid": (triton.cdiv(k_len, block_n), batch * heads, split),
        "split": split,
        "cells": cells,
        "cell": cell,
        "owned": owned,
        "mean_grid": (triton.cdiv(cells * cells, _MEAN_BLOCK), batch * heads)
        if cells and not owned
        else None,
        "scalars": (heads, heads // k.shape[1], q_len, k_len),
        "constexprs": dict(
            HEAD_DIM=head_dim,
            BLOCK_D=configs.block_d(head_dim),
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            CAUSAL=causal,
            HAS_BIAS=has_bias,
            RECEIVED=received,
            FAI=fai,
            POOLED=cells > 0,
            ROW_CELLS=_cells_touched(block_m, cell) if cells else 1,
            COL_CELLS=col_cells,
            DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
            EXP_POLY=bool(config.get("EXP_POLY", False)),
            PIPELINE=bool(config.get("PIPELINE", False)),
            POOLED_OWNED=owned,
            ZERO_ROWS=max(1, min(32, 1024 // zero_cols)),
            ZERO_COLS=zero_cols,
            QUERY_SPLIT=split,
            num_warps=config["num_warps"],
            num_stages=config["num_stages"],
        ),
    }
    if len(_LAUNCHES) > 256:
        _LAUNCHES.clear()
    _LAUNCHES[key] = plan
    return plan


MAX_POOLED_UNROLL = 16
"""Most (row cell x column cell) pairs one key tile may touch for the kernel to sum the pooled map: the
kernel unrolls ROW_CELLS x COL_CELLS reductions at each of its call sites, so narrow cells (e.g. 128 cells
over 256 keys, cell 2: 33 x 65 on the 64 x 128 GPU tiles) make a kernel Triton needs many minutes to
compile (seen 2026-12-07: `workbench capture --window 256` on an H100 hung past 120 s). Wider-cell maps
(4k keys in 64 cells: 2 x 3) compile in seconds."""


def pooled_in_kernel(q, k, pooled_cells: int) -> bool:
    """Whether the key-pass kernel sums this pooled map itself (else ``workbench_kernels.api`` sums it with
    the PyTorch definition on the same device and records that it did). Compiled kernels only: the CPU
    interpreter compiles nothing, so its tests keep exercising the kernel's narrow-cell code."""
    from workbench_kernels import configs

    if not pooled_cells or not k.shape[2] or not q.is_cuda:
        return True
    config = configs.key_config(q.shape[-1], q.dtype, q.device)
    return pooled_unroll(config["BLOCK_M"], config["BLOCK_N"], k.shape[2], pooled_cells) <= MAX_POOLED_UNROLL


def pooled_unroll(block_m: int, block_n: int, k_len: int, pooled_cells: int) -> int:
    """ROW_CELLS x COL_CELLS of a ``block_m`` x ``block_n`` tile over a map of ``pooled_cells`` on ``k_len`` keys."""
    from workbench_kernels.reference import pooled_grid

    cell, _ = pooled_grid(k_len, int(pooled_cells))
    return _cells_touched(block_m, cell) * _cells_touched(block_n, cell)


def key_statistics_launch(q, k, lse, *, scaling, causal, logit_bias, received, fai_window, pooled_cells):
    """Launch the key-side pass. Arguments are validated by ``workbench_kernels.api``; returns name -> tensor.

    One kernel launch and no allocation beyond the outputs when the pooled cell width divides the key
    tile (BLOCK_N; every length up to 8k with 64 cells on the GPU tiles): the kernel stores each cell's
    mean and the zeros of cells nobody sums into. Otherwise the map is zero-filled first and divided by
    its counts in place after (three launches). The bias is converted, clamped and scaled in the kernel.
    """
    import torch

    batch, heads, q_len, _ = q.shape
    k_len = k.shape[2]
    received, fai = bool(received), fai_window is not None
    if not (received or fai or pooled_cells):
        return {}
    plan = _launch_plan(
        q, k, causal=causal, has_bias=logit_bias is not None, received=received, fai=fai,
        pooled_cells=int(pooled_cells),
    )  # fmt: skip
    cells = plan["cells"]
    lse = lse.contiguous()  # no copy: the api passes the forward's fp32 lse
    shape, device = (batch, heads, k_len), q.device
    if plan["split"] > 1:  # the parts add into zeros: one zero-filled buffer for both outputs
        parts = torch.zeros((received + fai, *shape), dtype=torch.float32, device=device).unbind(0)
        received_out = parts[0] if received else lse
        fai_out = parts[-1] if fai else lse
    else:
        received_out = torch.empty(shape, dtype=torch.float32, device=device) if received else lse
        fai_out = torch.empty(shape, dtype=torch.float32, device=device) if fai else lse
    if cells:
        make = torch.empty if plan["owned"] else torch.zeros
        pooled_out = make((batch, heads, cells, cells), dtype=torch.float32, device=device)
    else:
        pooled_out = lse
    if logit_bias is not None:
        bias = logit_bias.to(device=device)  # no copy when it is on the device already
        bias_strides = bias.stride()
    else:
        bias, bias_strides = lse, (0, 0)
    fai_lo, fai_hi = fai_window if fai else (0, 0)
    key_statistics_kernel[plan["grid"]](
        q,
        k,
        lse,
        bias,
        received_out,
        fai_out,
        pooled_out,
        *q.stride(),
        *k.stride(),
        *bias_strides,
        *plan["scalars"],
        scaling * LOG2E_VALUE,
        int(fai_lo),
        int(fai_hi),
        plan["cell"],
        max(cells, 1),
        **plan["constexprs"],
    )
    if plan["mean_grid"] is not None:
        pooled_mean_kernel[plan["mean_grid"]](
            pooled_out, q_len, k_len, plan["cell"], cells, BLOCK=_MEAN_BLOCK
        )
    results = {}
    if received:
        results["received"] = received_out
    if fai:
        results["fai"] = fai_out
    if cells:
        results["pooled"] = pooled_out
    return results
