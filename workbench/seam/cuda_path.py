"""CUDA path of the seam: the Triton kernels in ``kernels/`` when they can serve the plan.

Returns ``(None, None)`` when the plan needs something only the PyTorch path does (gradients, padded
batches, probability edits, output edits other than scalar gates); the seam then falls back.
"""

from __future__ import annotations

import torch

from workbench.seam.plan import LayerPlan

try:  # the kernels are optional: CPU installs and older GPUs use the PyTorch path
    import kernels as _kernels

    _HAVE_KERNELS = hasattr(_kernels, "attention_with_statistics")
except Exception:  # pragma: no cover - depends on the machine
    _kernels = None
    _HAVE_KERNELS = False


def available() -> bool:
    return _HAVE_KERNELS and torch.cuda.is_available()


def attend(query, key, value, *, scaling, causal, mask, plan: LayerPlan):
    if (
        not _HAVE_KERNELS
        or mask is not None
        or plan.prob_edits
        or torch.is_grad_enabled()
        and query.requires_grad
    ):
        return None, None
    spec = plan.spec
    if plan.capture_heads is not None and (spec.top_k > 1 or spec.rows or spec.decode_rows):
        return None, None  # exact rows and top-k come from the PyTorch path
    gates = plan.head_gates(query.shape[1], query.device)
    if plan.output_edits and gates is None:
        return None, None
    if plan.uniform_heads:
        query = query.clone()
        query[:, plan.uniform_heads] = 0
    bias = plan.bias_matrix(query.shape[1], key.shape[2], query.device)
    statistics = tuple(spec.statistics) if plan.capture_heads is not None else ()
    output, stats = _kernels.attention_with_statistics(
        query,
        key,
        value,
        scaling=scaling,
        causal=causal,
        statistics=statistics,
        sink_tokens=spec.sink_tokens,
        local_window=spec.local_window,
        waad_window=spec.waad_window,
        span=spec.span,
        logit_bias=bias,
        head_gate=gates,
    )
    if plan.capture_heads is None:
        return output, None
    index = torch.tensor(plan.capture_heads, device=query.device)
    record = {"heads": plan.capture_heads, "phase": plan.phase}
    record["row"] = {name: stats[name].index_select(1, index) for name in spec.statistics}
    if plan.phase == "prefill" and (spec.key_statistics or spec.pooled_cells):
        keyed = _kernels.key_statistics(
            query,
            key,
            stats["lse"],
            scaling=scaling,
            causal=causal,
            logit_bias=bias,
            received="received" in spec.key_statistics,
            fai_window=spec.fai_window if "fai" in spec.key_statistics else None,
            pooled_cells=spec.pooled_cells,
        )
        record["key"] = {name: keyed[name].index_select(1, index) for name in spec.key_statistics}
        if spec.pooled_cells:
            record["pooled"] = keyed["pooled"].index_select(1, index)
    return output, record
