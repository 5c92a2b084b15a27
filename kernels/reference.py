"""Plain PyTorch references for the Triton kernels, and the one definition of every statistic.

``row_statistic`` (row statistics) and ``KeySums`` (key statistics and the pooled map) are the definitions:
the references below and the seam's PyTorch path (``workbench.seam.torch_path``) both compute through them,
one chunk of query rows at a time (``query_chunk``), and the Triton kernels are tested against them.
Same shapes as ``workbench_kernels.api`` (see its docstrings), computed in ``dtype`` (float64 for tests).
Memory is O(chunk * H * Tk), never T x T for all rows at once.
"""

from __future__ import annotations

import torch
from workbench_kernels.api import ROW_STATISTICS

CHUNK_ELEMENTS = 1 << 22  # probability elements one query chunk may hold (4M fp32 = 16 MiB)


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


def query_chunk(batch: int, heads: int, keys: int, budget: int = CHUNK_ELEMENTS) -> int:
    """Query rows per chunk so that one chunk's probabilities (batch x heads x rows x keys) hold at most
    ``budget`` elements (at least one row). The one chunking rule of every PyTorch path (the seam's and the
    references' fallback in ``api``): memory O(rows x keys) per layer, never T x T at long context."""
    return max(1, budget // max(1, batch * heads * keys))


def row_statistic(name, p, lse, distance, *, sink_tokens, local_window, waad_window, span):
    """One row statistic of a chunk of probability rows: THE definition (the seam's PyTorch path calls it,
    the Triton kernels are tested against it).

    p (B, H, n, Tk) rows summing to 1 over visible keys (0 elsewhere); lse (B, H, n); distance (n, Tk) the
    signed i_abs - j (negative for keys after the query, which only full attention sees). Returns (B, H, n)
    in p's dtype (argmax int64):
        lse            log-sum-exp of the row's logits
        entropy        -sum_j p_ij ln p_ij
        max, argmax    max_j p_ij and its key (the first on ties)
        sink_mass      sum_{j < sink_tokens} p_ij
        local_mass     sum_{0 <= i - j < local_window} p_ij  (the query itself and the keys just before it)
        span_mass      sum_{span[0] <= j < span[1]} p_ij
        mean_distance  sum_j p_ij (i - j)
        waad           sum_j p_ij min(i - j, waad_window)
    """
    d = distance.to(p.dtype)
    if name == "lse":
        return lse
    if name == "entropy":
        return -torch.special.xlogy(p, p).sum(-1)
    if name == "max":
        return p.amax(-1)
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


def pooled_grid(num_keys: int, pooled_cells: int) -> tuple[int, int]:
    """(cell, cells): a pooled map of ``pooled_cells`` a side over ``num_keys`` keys has square cells of
    ``cell = ceil(Tk / min(pooled_cells, Tk))`` positions, ``ceil(Tk / cell)`` of them a side (which can be
    fewer than asked: 10 keys in 6 cells gives 5 cells of 2)."""
    cell = -(-num_keys // min(pooled_cells, num_keys))
    return cell, -(-num_keys // cell)


class KeySums:
    """THE definition of the key statistics, summed over chunks of query rows (the seam's PyTorch path and
    ``key_statistics_reference`` both use it; the key-pass kernel is tested against it):

        received[j] = sum over present queries i of p_ij
        fai[j]      = mean of p_ij over present queries with lo <= i - j <= hi (0 if there are none)
        pooled[a,c] = mean of p_ij over query cell a (queries by i_abs) x key cell c (see ``pooled_grid``)

    "Present" queries are the rows of this call; with ``real_queries`` (a padding mask) only the real ones
    count towards received and FAI (a right-padded query still attends to the real keys before it).
    Sums are kept in ``dtype``: (B, H, Tk) each, pooled (B, H, cells, cells).
    """

    def __init__(self, batch, heads, num_keys, *, received, fai_window, pooled_cells, dtype, device):
        self.num_keys = num_keys
        self.fai_window = fai_window
        self.received = torch.zeros(batch, heads, num_keys, dtype=dtype, device=device) if received else None
        self.fai = None
        self.fai_count = None  # (Tk,) or, with a padding mask, (B, Tk): queries in each key's FAI window
        if fai_window is not None:
            self.fai = torch.zeros(batch, heads, num_keys, dtype=dtype, device=device)
        self.pooled = None
        if pooled_cells:
            self.cell, self.cells = pooled_grid(num_keys, pooled_cells)
            self.pooled = torch.zeros(batch, heads, self.cells, self.cells, dtype=dtype, device=device)
            self.rows_per_cell = torch.zeros(self.cells, dtype=torch.int64, device=device)

    def add(self, p, query_positions, real_queries=None):
        """p (B, H, n, Tk) probability rows of queries at absolute positions ``query_positions`` (n,);
        ``real_queries`` (B|1, n) bool or None."""
        if real_queries is not None:
            p = p * real_queries[:, None, :, None]
        if self.pooled is not None:  # rows_per_cell counts every present row, real or padding
            pad = self.cells * self.cell - self.num_keys
            summed = torch.nn.functional.pad(p, (0, pad)).unflatten(-1, (self.cells, self.cell)).sum(-1)
            blocks = torch.div(query_positions, self.cell, rounding_mode="floor")
            self.pooled.index_add_(2, blocks, summed.to(self.pooled.dtype))
            self.rows_per_cell += torch.bincount(blocks, minlength=self.cells)[: self.cells]
        if self.received is not None:
            self.received += p.sum(-2)
        if self.fai is not None:
            lo, hi = self.fai_window
            keys = torch.arange(self.num_keys, device=p.device)
            distance = query_positions[:, None] - keys[None, :]
            window = (distance >= lo) & (distance <= hi)  # (n, Tk)
            self.fai += (p * window).sum(-2)
            if real_queries is None:
                count = window.sum(0)
            else:
                count = (real_queries[:, :, None] & window[None]).sum(-2)
            self.fai_count = count if self.fai_count is None else self.fai_count + count

    def finish(self) -> dict:
        """name -> tensor for what was asked: "received", "fai", "pooled"."""
        out = {}
        if self.received is not None:
            out["received"] = self.received
        if self.fai is not None:
            count = self.fai_count
            if count is None:  # no query rows at all
                count = torch.zeros(self.num_keys, device=self.fai.device)
            if count.dim() == 2:  # per text of a padded batch
                count = count[:, None, :]
            out["fai"] = torch.where(count > 0, self.fai / count.clamp_min(1), torch.zeros_like(self.fai))
        if self.pooled is not None:
            keys_per_cell = torch.full((self.cells,), self.cell, dtype=torch.int64, device=self.pooled.device)
            keys_per_cell[-1] = self.num_keys - self.cell * (self.cells - 1)
            counts = (self.rows_per_cell[:, None] * keys_per_cell[None, :]).to(self.pooled.dtype)
            out["pooled"] = torch.where(
                counts > 0, self.pooled / counts.clamp_min(1), torch.zeros_like(self.pooled)
            )
        return out


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
            stats[name][:, :, rows] = row_statistic(
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
    """Reference of ``key_statistics`` (definitions: ``KeySums``). ``lse`` is ignored: rows are normalised
    exactly in ``dtype``. The pooled map has ``min(pooled_cells, Tk)`` cells a side, as the kernel writes it;
    cells past ``pooled_grid``'s count hold no position and stay 0."""
    batch, heads, q_len, _ = q.shape
    k_len = k.shape[2]
    sums = KeySums(
        batch,
        heads,
        k_len,
        received=received,
        fai_window=fai_window,
        pooled_cells=pooled_cells if k_len else 0,
        dtype=dtype,
        device=q.device,
    )
    positions = torch.arange(q_len, device=q.device) + (k_len - q_len)
    for start in range(0, q_len, chunk):
        rows = slice(start, min(start + chunk, q_len))
        _, p, _, _ = _chunk_probabilities(
            q, k, rows=rows, scaling=scaling, causal=causal, logit_bias=logit_bias, dtype=dtype
        )
        sums.add(p, positions[rows])
    results = sums.finish()
    if "pooled" in results:
        side = min(pooled_cells, k_len)
        missing = side - results["pooled"].shape[-1]
        results["pooled"] = torch.nn.functional.pad(results["pooled"], (0, missing, 0, missing))
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
