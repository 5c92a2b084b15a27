"""CUDA path of the seam: the Triton kernels in ``kernels/`` (imported as ``workbench_kernels``) when
they can serve the plan.

``unsupported`` names why a call cannot use them (the kernels do not import, gradients, padded batches,
probability edits, exact rows, output edits other than scalar gates); the seam then runs its PyTorch
path, records which backend ran each layer and warns once per reason on CUDA. Nothing falls back silently.
"""

from __future__ import annotations

import torch
from workbench_kernels.reference import pooled_grid  # plain PyTorch: imports wherever the seam does

from workbench.seam.plan import LayerPlan
from workbench.seam.record import LayerRecord

TRITON = "triton"  # the project's Triton kernels (on CUDA, or under TRITON_INTERPRET in tests)

try:  # the kernels are optional: CPU installs and older GPUs use the PyTorch path
    from workbench_kernels import api as _kernels

    IMPORT_ERROR: str | None = None
except Exception as _error:  # pragma: no cover - depends on the machine; tests simulate it
    _kernels = None
    IMPORT_ERROR = f"{type(_error).__name__}: {_error}"


def key_pass_path() -> dict | None:
    """The key pass this machine runs for a capture ({"name", "reason"}), or None without the kernels."""
    if _kernels is None:
        return None
    return _kernels.key_pass_path().as_dict()  # the current CUDA device, else CPU


def importable() -> bool:
    """Whether the project's kernels import (``workbench_kernels``)."""
    return _kernels is not None


def triton_error() -> str | None:
    """Why Triton cannot run the kernels here, or None."""
    try:
        import triton  # noqa: F401
    except Exception as error:
        return f"Triton does not import ({type(error).__name__}: {error})"
    return None


def available() -> bool:
    return importable() and torch.cuda.is_available() and triton_error() is None


def unsupported(query, mask, plan: LayerPlan) -> str | None:
    """Why the kernels cannot serve this call, or None when they can."""
    if _kernels is None:
        return f"the project's kernels (workbench_kernels) do not import: {IMPORT_ERROR}"
    if not _kernels.uses_triton(query):
        return triton_error() or "Triton does not run on this device"
    if mask is not None:
        return "an explicit attention mask (a padded batch) needs the PyTorch path"
    if plan.prob_edits:
        return "probability edits need the PyTorch path"
    if torch.is_grad_enabled() and query.requires_grad:
        return "gradients through attention need the PyTorch path"
    spec = plan.spec
    if plan.capture_heads is not None and (spec.top_k > 1 or spec.rows or spec.decode_rows):
        return "exact probability rows and top-k come from the PyTorch path"
    if plan.output_edits and plan.head_gates(query.shape[1], query.device) is None:
        return "output edits other than scalar head gates need the PyTorch path"
    return None


def attend(query, key, value, *, scaling, causal, plan: LayerPlan):
    """The kernels' forward (and key pass) for a call that ``unsupported`` accepted."""
    spec = plan.spec
    gates = plan.head_gates(query.shape[1], query.device)
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
    record = LayerRecord(
        heads=tuple(plan.capture_heads),
        phase=plan.phase,
        num_queries=query.shape[2],
        num_keys=key.shape[2],
        backend=TRITON,
        row={name: stats[name].index_select(1, index) for name in spec.statistics},
    )
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
        ran = _kernels.last_key_pass_path()
        if ran is not None and ran.name != TRITON and ran.name.startswith("gluon"):  # the opt-in Hopper key pass
            record.backend = f"{TRITON}+{ran.name}"
        if spec.key_statistics:
            record.key = {name: keyed[name].index_select(1, index) for name in spec.key_statistics}
        if spec.pooled_cells:
            _, cells = pooled_grid(key.shape[2], spec.pooled_cells)  # the kernel pads to min(cells, Tk)
            record.pooled = keyed["pooled"].index_select(1, index)[..., :cells, :cells]
    return output, record
