"""Exact attention with statistics in PyTorch, in query chunks: memory O(chunk x keys), never T x T.

This is the CPU path of the seam and the path used whenever gradients are needed. All statistics are
computed in fp32 from the probabilities actually used (after any probability edit); ``lse`` is the
log-sum-exp of the (biased) logits.
"""

from __future__ import annotations

import math

import torch

from workbench.seam.plan import LayerPlan

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
    """Collects the statistics of one layer over query chunks."""

    def __init__(self, plan: LayerPlan, batch, num_queries, num_keys, device):
        spec = plan.spec
        self.plan = plan
        self.heads = plan.capture_heads
        n = len(self.heads)
        self.row = {name: [] for name in spec.statistics}
        self.top_k = [] if spec.top_k > 1 else None
        self.prefill = plan.phase == "prefill"
        self.key = {}
        if self.prefill:
            for name in spec.key_statistics:
                self.key[name] = torch.zeros(batch, n, num_keys, dtype=torch.float32, device=device)
        self.pooled = None
        if self.prefill and spec.pooled_cells:
            cells = min(spec.pooled_cells, num_keys)
            self.cell = math.ceil(num_keys / cells)
            self.ncell = math.ceil(num_keys / self.cell)
            self.pooled = torch.zeros(batch, n, self.ncell, self.ncell, dtype=torch.float32, device=device)
        self.rows = {}
        self.num_keys = num_keys
        self.num_queries = num_queries
        self.decode_row = None
        self.fai_count = None  # (batch, key) queries in each key's FAI window, counted when padding is masked

    def add(self, p, scores_lse, query_positions, real_queries=None):
        """p: (batch, captured heads, chunk, key) fp32 probabilities; query_positions: (chunk,).

        ``real_queries`` (batch|1, chunk) bool, from a padding mask: the key statistics and the pooled map
        sum over real queries only (a right-padded query still attends to the real keys before it).
        """
        spec = self.plan.spec
        keys = torch.arange(self.num_keys, device=p.device)
        distance = (query_positions[:, None] - keys[None, :]).to(torch.float32)  # (chunk, key)
        distance = distance.clamp_min(0)
        for name in spec.statistics:
            if name == "lse":
                value = scores_lse
            elif name == "entropy":
                value = -torch.special.xlogy(p, p).sum(-1)
            elif name == "max":
                value = p.amax(-1)
            elif name == "argmax":
                value = p.argmax(-1)
            elif name == "sink_mass":
                value = p[..., : spec.sink_tokens].sum(-1)
            elif name == "local_mass":
                value = (p * (distance < spec.local_window)).sum(-1)
            elif name == "span_mass":
                start, end = spec.span
                value = p[..., start:end].sum(-1)
            elif name == "mean_distance":
                value = (p * distance).sum(-1)
            elif name == "waad":
                value = (p * distance.clamp_max(spec.waad_window)).sum(-1)
            else:  # pragma: no cover - the spec validates names
                raise KeyError(name)
            self.row[name].append(value)
        if self.top_k is not None:
            k = min(spec.top_k, self.num_keys)
            self.top_k.append(p.topk(k, dim=-1).indices)
        if self.prefill:
            if real_queries is not None:
                p = p * real_queries[:, None, :, None]
            if "received" in self.key:
                self.key["received"] += p.sum(-2)
            if "fai" in self.key:
                lo, hi = spec.fai_window
                raw = query_positions[:, None] - keys[None, :]
                window = (raw >= lo) & (raw <= hi)
                self.key["fai"] += (p * window).sum(-2)
                if real_queries is not None:
                    count = (real_queries[:, :, None] & window[None]).sum(-2).to(torch.float32)
                    self.fai_count = count if self.fai_count is None else self.fai_count + count
            if self.pooled is not None:
                pad = self.ncell * self.cell - self.num_keys
                summed = torch.nn.functional.pad(p, (0, pad)).unflatten(-1, (self.ncell, self.cell)).sum(-1)
                blocks = torch.div(query_positions, self.cell, rounding_mode="floor")
                self.pooled.index_add_(2, blocks, summed)
        wanted = {r if r >= 0 else self.num_keys + r for r in spec.rows}
        for local, position in enumerate(query_positions.tolist()):
            if position in wanted:
                self.rows[position] = p[:, :, local, :].clone()
        if spec.decode_rows and self.plan.phase == "decode":
            self.decode_row = p[:, :, -1, :].clone()

    def finish(self) -> dict:
        out = {"heads": self.heads, "phase": self.plan.phase}
        out["row"] = {name: torch.cat(chunks, dim=-1) for name, chunks in self.row.items()}
        if self.top_k is not None:
            out["top_k"] = torch.cat(self.top_k, dim=-2)
        if self.prefill and self.key:
            key = dict(self.key)
            if "fai" in key:
                lo, hi = self.plan.spec.fai_window
                last = self.num_keys - 1
                j = torch.arange(self.num_keys, device=key["fai"].device)
                count = (torch.clamp(j + hi, max=last) - (j + lo) + 1).clamp_min(0)
                if self.fai_count is not None:  # padded batch: each text's own queries
                    count = self.fai_count[:, None, :]
                key["fai"] = torch.where(
                    count > 0, key["fai"] / count.clamp_min(1), torch.zeros_like(key["fai"])
                )
            out["key"] = key
        if self.pooled is not None:
            sizes = torch.full((self.ncell,), self.cell, dtype=torch.float32, device=self.pooled.device)
            sizes[-1] = self.num_keys - self.cell * (self.ncell - 1)
            out["pooled"] = self.pooled / (sizes[:, None] * sizes[None, :])
        if self.rows:
            out["rows"] = self.rows
        if self.decode_row is not None:
            out["decode_row"] = self.decode_row
        return out


def attend(query, key, value, *, scaling, causal, mask, plan: LayerPlan):
    """Attention for one layer.

    Args:
        query: (batch, head, q, dim); key, value: (batch, kv_head, k, dim), GQA unexpanded.
        mask: None, or a bool/additive mask broadcastable to (batch, head, q, k).
    Returns:
        output (batch, q, head, dim) in the query dtype, and the layer record (or None).
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
        chunk = max(1, min(num_queries, _CHUNK_ELEMENTS // max(1, batch * num_heads * num_keys)))
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
