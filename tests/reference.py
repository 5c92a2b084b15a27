"""Independent reference: every statistic computed in float64 from full eager attention matrices."""

from __future__ import annotations

import torch


def eager_attentions(hf_model, ids, attention_mask=None):
    """Attention probabilities per layer, (batch, head, T, T) float64, from ``attn_implementation='eager'``."""
    previous = hf_model.config._attn_implementation
    hf_model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = hf_model(
                input_ids=ids, attention_mask=attention_mask, output_attentions=True, use_cache=False
            )
    finally:
        hf_model.set_attn_implementation(previous)
    return [a.to(torch.float64) for a in out.attentions], out.logits


def row_statistics(p, *, sink_tokens=1, local_window=16, waad_window=10, span=None):
    """p: (batch, head, T, T) -> dict of (batch, head, T)."""
    t = p.shape[-1]
    i = torch.arange(t, dtype=torch.float64)[:, None]
    j = torch.arange(t, dtype=torch.float64)[None, :]
    distance = (i - j).clamp_min(0)
    safe = torch.where(p > 0, p, torch.ones_like(p))
    out = {
        "entropy": -(p * torch.log(safe)).sum(-1),
        "max": p.amax(-1),
        "argmax": p.argmax(-1),
        "sink_mass": p[..., :sink_tokens].sum(-1),
        "local_mass": (p * ((i - j) < local_window) * ((i - j) >= 0)).sum(-1),
        "mean_distance": (p * distance).sum(-1),
        "waad": (p * distance.clamp_max(waad_window)).sum(-1),
    }
    if span is not None:
        out["span_mass"] = p[..., span[0] : span[1]].sum(-1)
    return out


def key_statistics(p, fai_window=(10, 100)):
    t = p.shape[-1]
    received = p.sum(-2)
    lo, hi = fai_window
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    window = ((i - j) >= lo) & ((i - j) <= hi)
    count = window.sum(0).to(torch.float64)
    fai = torch.where(count > 0, (p * window).sum(-2) / count.clamp_min(1), torch.zeros_like(received))
    return {"received": received, "fai": fai}


def pooled(p, cells):
    t = p.shape[-1]
    cells = min(cells, t)
    size = -(-t // cells)
    n = -(-t // size)
    out = torch.zeros(*p.shape[:-2], n, n, dtype=torch.float64)
    for a in range(n):
        for c in range(n):
            block = p[..., a * size : (a + 1) * size, c * size : (c + 1) * size]
            out[..., a, c] = block.mean(dim=(-1, -2))
    return out


def reference_lse(hf_model, ids):
    """Row log-sum-exp per layer (batch, head, T) in float64, from a test-only full-matrix attention
    function registered under its own name (eager attention does not return the LSE)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    found = {}

    def full_matrix(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        group = query.shape[1] // key.shape[1]
        k = key.repeat_interleave(group, dim=1).to(torch.float64)
        v = value.repeat_interleave(group, dim=1).to(torch.float64)
        scores = query.to(torch.float64) @ k.transpose(-1, -2) * scaling
        t_q, t_k = scores.shape[-2:]
        causal = torch.arange(t_k)[None, :] <= (torch.arange(t_q) + t_k - t_q)[:, None]
        scores = scores.masked_fill(~causal, float("-inf"))
        found[module.layer_idx] = torch.logsumexp(scores, -1)
        out = torch.softmax(scores, -1) @ v
        return out.transpose(1, 2).to(query.dtype).contiguous(), None

    AttentionInterface.register("reference_full", full_matrix)
    AttentionMaskInterface.register("reference_full", sdpa_mask)
    previous = hf_model.config._attn_implementation
    hf_model.set_attn_implementation("reference_full")
    try:
        with torch.no_grad():
            hf_model(input_ids=ids, use_cache=False)
    finally:
        hf_model.set_attn_implementation(previous)
    return [found[layer] for layer in sorted(found)]
