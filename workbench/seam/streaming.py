"""DuoAttention's full/streaming mix for a whole layer in two SDPA calls (the batched form of
``StreamingMix``).

``out_h = g_h * FullAttn_h + (1 - g_h) * StreamAttn_h``: each head's output is linear in its probability
row, and StreamAttn's row is the full row restricted to the sink + recent window and renormalised, which
is what softmax over the window's keys alone gives. So one causal SDPA call, one SDPA call under the
window mask, and a per-head mix equal the per-head probability edits of the PyTorch path (checked in
tests/retrieval/test_streaming_batched.py), with gradients to the gates through both calls.

K/V are expanded to the query heads before SDPA: with GQA unexpanded, fp32 SDPA falls back to the
materialising math kernel, which would keep a (batch, head, query, key) matrix per layer for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.seam.interventions import StreamingMix
from workbench.seam.plan import LayerPlan

BACKEND = "sdpa+streaming-mix"


def layer_mix(plan: LayerPlan, num_heads: int, device) -> tuple[torch.Tensor, int, int] | None:
    """(gates (head,), sink, recent) when this layer's only interventions are StreamingMix edits of one
    window (one per head at most) and nothing is captured; else None (the per-head path runs)."""
    if not plan.prob_edits or plan.capture_heads is not None or plan.uniform_heads or plan.logit_biases:
        return None
    if plan.output_edits:
        return None
    edits = plan.prob_edits
    if any(len(e) != 1 or type(e[0]) is not StreamingMix for e in edits.values()):
        return None
    windows = {(e[0].sink, e[0].recent) for e in edits.values()}
    if len(windows) != 1:
        return None
    sink, recent = windows.pop()
    one = torch.ones((), dtype=torch.float32, device=device)
    gates = torch.stack(
        [
            torch.as_tensor(edits[h][0].gate, dtype=torch.float32, device=device) if h in edits else one
            for h in range(num_heads)
        ]
    )
    return gates, sink, recent


def _expand(tensor: torch.Tensor, group: int) -> torch.Tensor:
    return tensor if group == 1 else tensor.repeat_interleave(group, dim=1)


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2


def attend(query, key, value, mask, scaling, causal, gates, sink: int, recent: int) -> torch.Tensor:
    """query (batch, head, q, dim); key/value (batch, kv_head, k, dim); mask None or broadcastable to
    (batch, head, q, k), bool or additive. Returns (batch, q, head, dim) in the query dtype."""
    num_queries, num_keys = query.shape[2], key.shape[2]
    group = query.shape[1] // key.shape[1]
    k, v = _expand(key, group), _expand(value, group)
    positions = torch.arange(num_queries, device=query.device) + (num_keys - num_queries)
    keys = torch.arange(num_keys, device=query.device)
    visible = (
        keys[None, :] <= positions[:, None]
        if causal
        else torch.ones(num_queries, num_keys, dtype=torch.bool, device=query.device)
    )
    if mask is not None:
        visible = visible[None, None] & _as_bool(mask)
    window = StreamingMix(0, 0, sink=sink, recent=recent).window(positions, num_keys)
    streamed = visible & window
    # a row whose window holds no visible key (only a padded query can have one) keeps its visible keys,
    # so no row is empty (an empty row gives NaN, which 0-weights would spread)
    streamed = torch.where(streamed.any(-1, keepdim=True), streamed, visible)
    full = F.scaled_dot_product_attention(query, k, v, attn_mask=visible, scale=scaling)
    stream = F.scaled_dot_product_attention(query, k, v, attn_mask=streamed, scale=scaling)
    g = gates.view(1, -1, 1, 1)
    mixed = g * full.to(torch.float32) + (1 - g) * stream.to(torch.float32)
    return mixed.to(query.dtype).transpose(1, 2).contiguous()
