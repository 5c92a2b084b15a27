"""Exact attention with statistics in PyTorch, in query chunks: memory O(chunk x keys), never T x T.

This is the CPU path of the seam and the path used whenever gradients are needed. Every statistic is
computed by its one definition in the kernels' reference (``workbench_kernels.reference.row_statistic``
and ``KeySums``) from the probabilities actually used (after any probability edit and mask), chunk by
chunk (``query_chunk``); ``lse`` is the log-sum-exp of the (biased) logits.
"""

from __future__ import annotations

import torch
from workbench_kernels.reference import KeySums, query_chunk, row_statistic

from workbench.seam.plan import LayerPlan
from workbench.seam.record import LayerRecord

# probability elements kept alive per chunk (batch x heads x chunk x keys); 4M fp32 = 16 MB
_CHUNK_ELEMENTS = 1 << 22


BACKEND = "pytorch"  # the name records and captures give this path


def allowed_keys(query_positions, num_keys, mask_chunk, causal, device):
    """Bool (batch|1, head|1, chunk, key): which keys each query may attend to."""
    keys = torch.arange(num_keys, device=device)
    allowed = None
    if causal:
        allowed = (keys[None, :] <= query_positions[:, None])[None, None]
    if mask_chunk is not None:
        if mask_chunk.dtype == torch.bool:
            extra = mask_chunk
        else:  # additive float mask: very negative means masked
            extra = mask_chunk > torch.finfo(mask_chunk.dtype).min / 2
        allowed = extra if allowed is None else (allowed & extra)
    if allowed is None:
        allowed = torch.ones(1, 1, query_positions.shape[0], num_keys, dtype=torch.bool, device=device)
    return allowed


class Accumulator:
    """Collects the statistics of one layer over query chunks, through the kernels' reference definitions
    (``row_statistic``, ``KeySums``), and finishes into a ``LayerRecord``."""

    def __init__(self, plan: LayerPlan, batch, num_queries, num_keys, device):
        spec = plan.spec
        self.plan = plan
        self.heads = plan.capture_heads
        self.row = {name: [] for name in spec.statistics}
        self.top_k = [] if spec.top_k > 1 else None
        self.prefill = plan.phase == "prefill"
        self.key_sums = None
        if self.prefill and (spec.key_statistics or spec.pooled_cells):
            self.key_sums = KeySums(
                batch,
                len(self.heads),
                num_keys,
                received="received" in spec.key_statistics,
                fai_window=spec.fai_window if "fai" in spec.key_statistics else None,
                pooled_cells=spec.pooled_cells,
                dtype=torch.float32,
                device=device,
            )
        self.rows = {}
        self.num_keys = num_keys
        self.num_queries = num_queries
        self.decode_row = None

    def add(self, p, scores_lse, query_positions, real_queries=None):
        """p: (batch, captured heads, chunk, key) probabilities; query_positions: (chunk,).

        ``real_queries`` (batch|1, chunk) bool, from a padding mask: the key statistics and the pooled map
        sum over real queries only (a right-padded query still attends to the real keys before it).
        """
        spec = self.plan.spec
        keys = torch.arange(self.num_keys, device=p.device)
        distance = query_positions[:, None] - keys[None, :]  # (chunk, key), signed
        for name in spec.statistics:
            self.row[name].append(
                row_statistic(
                    name,
                    p,
                    scores_lse,
                    distance,
                    sink_tokens=spec.sink_tokens,
                    local_window=spec.local_window,
                    waad_window=spec.waad_window,
                    span=spec.span,
                )
            )
        if self.top_k is not None:
            k = min(spec.top_k, self.num_keys)
            self.top_k.append(p.topk(k, dim=-1).indices)
        if self.key_sums is not None:
            self.key_sums.add(p, query_positions, real_queries)
        wanted = {r if r >= 0 else self.num_keys + r for r in spec.rows}
        for local, position in enumerate(query_positions.tolist()):
            if position in wanted:
                self.rows[position] = p[:, :, local, :].clone()
        if spec.decode_rows and self.plan.phase == "decode":
            self.decode_row = p[:, :, -1, :].clone()

    def finish(self) -> LayerRecord:
        record = LayerRecord(
            heads=tuple(self.heads),
            phase=self.plan.phase,
            num_queries=self.num_queries,
            num_keys=self.num_keys,
            backend=BACKEND,
            row={name: torch.cat(chunks, dim=-1) for name, chunks in self.row.items()},
            rows=self.rows,
            decode_row=self.decode_row,
        )
        if self.top_k is not None:
            record.top_k = torch.cat(self.top_k, dim=-2)
        if self.key_sums is not None:
            sums = self.key_sums.finish()
            record.key = {name: sums[name] for name in self.plan.spec.key_statistics} or None
            record.pooled = sums.get("pooled")
        return record


def attend(query, key, value, *, scaling, causal, mask, plan: LayerPlan):
    """Attention for one layer.

    Args:
        query: (batch, head, q, dim); key, value: (batch, kv_head, k, dim), GQA unexpanded.
        mask: None, or a bool/additive mask broadcastable to (batch, head, q, k).
    Returns:
        output (batch, q, head, dim) in the query dtype, and the ``LayerRecord`` (or None).
    """
    batch, num_heads, num_queries, dim = query.shape
    num_kv, num_keys = key.shape[1], key.shape[2]
    group = num_heads // num_kv
    device = query.device
    work = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    q = query.to(work)
    k = key.to(work)
    v = value.to(work)
    if plan.uniform_heads:
        q = q.clone()
        q[:, plan.uniform_heads] = 0
    bias = plan.bias_matrix(num_heads, num_keys, device)
    offset = num_keys - num_queries
    positions = torch.arange(num_queries, device=device) + offset

    accumulator = None
    if plan.capture_heads is not None:
        accumulator = Accumulator(plan, batch, num_queries, num_keys, device)
        capture_index = torch.tensor(plan.capture_heads, device=device)

    if plan.needs_all_queries:
        chunk = num_queries
    else:
        chunk = max(1, min(num_queries, query_chunk(batch, num_heads, num_keys, budget=_CHUNK_ELEMENTS)))
    grouped_q = q.view(batch, num_kv, group, num_queries, dim)
    k_t = k.transpose(-1, -2).unsqueeze(2)  # (batch, kv, 1, dim, key)
    v_g = v.unsqueeze(2)  # (batch, kv, 1, key, dim)
    outputs = []
    for start in range(0, num_queries, chunk):
        stop = min(num_queries, start + chunk)
        scores = torch.matmul(grouped_q[:, :, :, start:stop], k_t) * scaling
        scores = scores.reshape(batch, num_heads, stop - start, num_keys)
        if bias is not None:
            scores = scores + bias[None, :, None, :].to(scores.dtype)
        mask_chunk = None
        if mask is not None:
            mask_chunk = mask[..., start:stop, :] if mask.shape[-2] > 1 else mask
        allowed = allowed_keys(positions[start:stop], num_keys, mask_chunk, causal, device)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        lse = torch.logsumexp(scores, dim=-1)
        p = torch.softmax(scores, dim=-1) * allowed
        for head, edits in plan.prob_edits.items():
            head_p = p[:, head]
            for edit in edits:
                head_p = edit.edit(head_p, positions[start:stop])
            p = p.clone() if p.requires_grad else p
            p[:, head] = head_p
        out = torch.matmul(p.view(batch, num_kv, group, stop - start, num_keys), v_g)
        outputs.append(out.reshape(batch, num_heads, stop - start, dim))
        if accumulator is not None:
            real = None
            if mask_chunk is not None:  # a query is real iff it may attend to its own key (pads may not)
                own = positions[start:stop].view(1, 1, -1, 1).expand(allowed.shape[0], 1, -1, 1)
                square = allowed[:, :1].expand(-1, -1, stop - start, -1)
                real = square.gather(-1, own)[:, 0, :, 0]  # (batch|1, chunk)
            accumulator.add(
                p.index_select(1, capture_index).detach(),
                lse.index_select(1, capture_index).detach(),
                positions[start:stop],
                real,
            )
    output = torch.cat(outputs, dim=2).transpose(1, 2)  # (batch, q, head, dim)
    if plan.output_edits:
        output = plan.apply_output_edits(output)
    record = accumulator.finish() if accumulator is not None else None
    return output.to(query.dtype).contiguous(), record
