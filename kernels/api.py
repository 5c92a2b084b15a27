"""Entry points the attention seam calls: forward with row statistics, key statistics, probability tiles.

CUDA tensors run the Triton kernels. CPU tensors run them under Triton's interpreter only when
``TRITON_INTERPRET=1`` was set before the first call (tests; bf16 excluded, the interpreter gets it
wrong); otherwise CPU tensors, or a machine without Triton, use the chunked PyTorch reference in fp32
(``workbench_kernels.reference``), which gives the same results more slowly. Triton is imported on first
use, so importing this module never compiles or decorates anything.

Import name: this folder installs as ``workbench_kernels`` (setup.py maps it). It has no ``__init__.py`` on
purpose: a regular package named ``kernels`` here would shadow Hugging Face's ``kernels`` distribution,
which transformers imports, whenever Python runs from the repository root.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

ROW_STATISTICS = (
    "lse",
    "entropy",
    "max",
    "argmax",
    "sink_mass",
    "local_mass",
    "span_mass",
    "mean_distance",
    "waad",
)
KEY_STATISTICS = ("received", "fai")
"""Per-key statistics a caller can ask for (``CaptureSpec.key_statistics`` checks against this list). The key
pass also writes the pooled map ("pooled") when ``pooled_cells > 0``; that is a map, not a key statistic."""
MAX_HEAD_DIM = 256
_FLOAT_TYPES = ("float16", "bfloat16", "float32")


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def uses_triton(tensor: Tensor) -> bool:
    """Whether calls on ``tensor`` run the Triton kernels (else the PyTorch reference in fp32)."""
    import torch

    if not _triton_available():
        return False
    if tensor.is_cuda:
        return True
    return os.environ.get("TRITON_INTERPRET") == "1" and tensor.dtype != torch.bfloat16


def _device_guard(tensor: Tensor):
    import torch

    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def _check_inputs(q, k, v, *, causal, logit_bias, head_gate=None):
    if q.dim() != 4 or k.dim() != 4 or (v is not None and v.dim() != 4):
        raise ValueError(
            f"expected q (B, H, Tq, D) and k, v (B, Hkv, Tk, D); got q {tuple(q.shape)}, k {tuple(k.shape)}"
            + (f", v {tuple(v.shape)}" if v is not None else "")
            + " (transpose HF's (B, T, H, D) with .transpose(1, 2))"
        )
    batch, heads, q_len, head_dim = q.shape
    kv_heads, k_len = k.shape[1], k.shape[2]
    if k.shape[0] != batch or k.shape[3] != head_dim:
        raise ValueError(f"k {tuple(k.shape)} does not match q {tuple(q.shape)} in batch or head dim")
    if v is not None and tuple(v.shape) != tuple(k.shape):
        raise ValueError(f"v {tuple(v.shape)} must have the shape of k {tuple(k.shape)}")
    if kv_heads == 0 or heads % kv_heads:
        raise ValueError(
            f"{heads} query heads are not a multiple of {kv_heads} KV heads (GQA needs H % Hkv == 0)"
        )
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if tensor is None:
            continue
        if str(tensor.dtype).removeprefix("torch.") not in _FLOAT_TYPES:
            raise TypeError(f"{name} is {tensor.dtype}; the kernels take float16, bfloat16 or float32")
        if tensor.dtype != q.dtype or tensor.device != q.device:
            raise TypeError(f"{name} is {tensor.dtype} on {tensor.device} but q is {q.dtype} on {q.device}")
    if head_dim > MAX_HEAD_DIM:
        raise ValueError(f"head dim {head_dim} is above the supported {MAX_HEAD_DIM}")
    if causal and q_len > k_len:
        raise ValueError(
            f"causal attention with {q_len} queries and {k_len} keys: queries sit at the last Tq positions, "
            "so Tq must be <= Tk"
        )
    if logit_bias is not None and tuple(logit_bias.shape) != (heads, k_len):
        raise ValueError(f"logit_bias must be (H, Tk) = ({heads}, {k_len}); got {tuple(logit_bias.shape)}")
    if head_gate is not None and tuple(head_gate.shape) != (heads,):
        raise ValueError(f"head_gate must be (H,) = ({heads},); got {tuple(head_gate.shape)}")


def _reference_chunk(batch: int, heads: int, k_len: int) -> int:
    """Query rows per chunk for the PyTorch path: the seam's one rule (``reference.query_chunk``)."""
    from workbench_kernels.reference import query_chunk

    return query_chunk(batch, heads, k_len)


def attention_with_statistics(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scaling: float,
    causal: bool = True,
    statistics: tuple[str, ...] = (),
    sink_tokens: int = 1,
    local_window: int = 16,
    waad_window: int = 10,
    span: tuple[int, int] | None = None,
    logit_bias: Tensor | None = None,
    head_gate: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Attention output and per-row statistics in one pass.

    q (B, H, Tq, D), k / v (B, Hkv, Tk, D), H % Hkv == 0 (query head h uses KV head h // (H // Hkv)).
    Query i sits at absolute position Tk - Tq + i. logit_bias (H, Tk) fp32 is added to the logits;
    head_gate (H,) multiplies each head's output (statistics are those of the attention, before the gate).
    Returns out (B, Tq, H, D) in q.dtype and name -> (B, H, Tq) fp32 (argmax int64) for each requested
    statistic, "lse" (natural log) always included. Definitions: kernels/attention_forward.py.
    """
    import torch

    statistics = tuple(statistics)
    unknown = [name for name in statistics if name not in ROW_STATISTICS]
    if unknown:
        raise ValueError(f"unknown statistics {unknown}; choose from {ROW_STATISTICS}")
    if "span_mass" in statistics:
        if span is None:
            raise ValueError("span_mass needs span=(start, end), the key positions [start, end) to sum over")
        span = (int(span[0]), int(span[1]))
    if not float(scaling) > 0:
        raise ValueError(f"scaling={scaling}; it must be > 0 (usually head_dim ** -0.5)")
    if sink_tokens < 0 or local_window < 0 or waad_window < 0:
        raise ValueError("sink_tokens, local_window and waad_window must be >= 0")
    _check_inputs(q, k, v, causal=causal, logit_bias=logit_bias, head_gate=head_gate)
    wants = tuple(dict.fromkeys(("lse",) + statistics))
    batch, heads, q_len, head_dim = q.shape
    if q_len == 0:
        out = q.new_empty((batch, 0, heads, head_dim))
        return out, {
            name: torch.empty(
                (batch, heads, 0), dtype=torch.int64 if name == "argmax" else torch.float32, device=q.device
            )
            for name in wants
        }
    if uses_triton(q):
        from workbench_kernels.attention_forward import attention_forward

        with _device_guard(q):
            return attention_forward(
                q,
                k,
                v,
                scaling=float(scaling),
                causal=bool(causal),
                statistics=wants,
                sink_tokens=int(sink_tokens),
                local_window=int(local_window),
                waad_window=int(waad_window),
                span=span,
                logit_bias=logit_bias,
                head_gate=head_gate,
            )
    from workbench_kernels.reference import attention_reference

    out, stats = attention_reference(
        q,
        k,
        v,
        scaling=scaling,
        causal=causal,
        statistics=wants,
        sink_tokens=sink_tokens,
        local_window=local_window,
        waad_window=waad_window,
        span=span,
        logit_bias=logit_bias,
        head_gate=head_gate,
        dtype=torch.float32,
        chunk=_reference_chunk(batch, heads, k.shape[2]),
    )
    return out.to(q.dtype), stats


def key_statistics(
    q: Tensor,
    k: Tensor,
    lse: Tensor,
    *,
    scaling: float,
    causal: bool = True,
    logit_bias: Tensor | None = None,
    received: bool = True,
    fai_window: tuple[int, int] | None = (10, 100),
    pooled_cells: int = 0,
) -> dict[str, Tensor]:
    """Key-side statistics from the saved lse (B, H, Tq), recomputing q.k without storing T x T.

    Returns "received" and "fai" as (B, H, Tk) fp32 when asked, and "pooled" (B, H, cells, cells) fp32
    with cells = min(pooled_cells, Tk) when pooled_cells > 0. Definitions: kernels/key_statistics_pass.py.
    """
    _check_inputs(q, k, None, causal=causal, logit_bias=logit_bias)
    batch, heads, q_len, _ = q.shape
    if tuple(lse.shape) != (batch, heads, q_len):
        raise ValueError(f"lse must be (B, H, Tq) = {(batch, heads, q_len)}; got {tuple(lse.shape)}")
    if pooled_cells < 0 or pooled_cells > 256:
        raise ValueError(f"pooled_cells={pooled_cells}; choose 0 (no map) up to 256")
    if fai_window is not None:
        fai_window = (int(fai_window[0]), int(fai_window[1]))
        if fai_window[0] > fai_window[1]:
            raise ValueError(f"fai_window {fai_window} must be (low, high) with low <= high")
    from workbench_kernels import key_pass_selection as selection

    if q_len == 0:
        from workbench_kernels.reference import key_statistics_reference

        _record_key_pass(selection.KeyPassPath(selection.REFERENCE, "no queries (Tq = 0): nothing to sum"))
        return key_statistics_reference(
            q,
            k,
            scaling=scaling,
            causal=causal,
            logit_bias=logit_bias,
            received=received,
            fai_window=fai_window,
            pooled_cells=pooled_cells,
            dtype=lse.dtype,
        )
    if uses_triton(q):
        import torch
        from workbench_kernels.key_statistics_pass import key_statistics_launch

        lse = lse.to(device=q.device, dtype=torch.float32).contiguous()
        options = dict(scaling=float(scaling), causal=bool(causal), logit_bias=logit_bias, received=received,
                       fai_window=fai_window)  # fmt: skip
        path = selection.choose(q=q, k=k, pooled_cells=int(pooled_cells))
        if path.name == selection.GLUON:
            try:
                from workbench_kernels.gluon_key_pass import gluon_key_statistics_launch

                with _device_guard(q):
                    results = gluon_key_statistics_launch(q, k, lse, **options)
                _record_key_pass(path)
                return results
            except Exception as error:  # compile or launch failure: recorded, warned once, Triton runs
                path = selection.record_launch_failure(q, error)
        from workbench_kernels.key_statistics_pass import pooled_in_kernel

        if pooled_cells and not pooled_in_kernel(q, k, int(pooled_cells)):
            # narrow pooled cells (short context): the kernel sums received/FAI, PyTorch sums the map
            from workbench_kernels.reference import key_statistics_reference, pooled_grid

            cell, _ = pooled_grid(k.shape[2], int(pooled_cells))
            _record_key_pass(selection.KeyPassPath(path.name, f"{path.reason}; the pooled map by PyTorch on the "
                                                              f"device (cell width {cell} is too narrow for the "
                                                              "kernel's unrolled cell loop)"))  # fmt: skip
            with _device_guard(q):
                results = key_statistics_launch(q, k, lse, **options, pooled_cells=0) if received or fai_window else {}
                results["pooled"] = key_statistics_reference(
                    q, k, scaling=scaling, causal=causal, logit_bias=logit_bias, received=False, fai_window=None,
                    pooled_cells=int(pooled_cells), dtype=torch.float32, chunk=_reference_chunk(batch, heads, k.shape[2]),
                )["pooled"]  # fmt: skip
            return results
        _record_key_pass(path)
        with _device_guard(q):
            return key_statistics_launch(q, k, lse, **options, pooled_cells=int(pooled_cells))
    import torch
    from workbench_kernels.reference import key_statistics_reference

    _record_key_pass(selection.choose(q=q, k=k, pooled_cells=int(pooled_cells)))
    results = key_statistics_reference(
        q,
        k,
        scaling=scaling,
        causal=causal,
        logit_bias=logit_bias,
        received=received,
        fai_window=fai_window,
        pooled_cells=pooled_cells,
        dtype=torch.float32,
        chunk=_reference_chunk(batch, heads, k.shape[2]),
    )
    return results


_last_key_pass = None


def _record_key_pass(path) -> None:
    global _last_key_pass
    _last_key_pass = path


def key_pass_path(device=None):
    """The key pass this machine runs for ``device`` (default: the current CUDA device, else CPU), as a
    ``KeyPassPath`` (name + reason; ``.as_dict()`` for a record). Calls that the Gluon kernel does not
    cover (fp32, pooled map, other head dims) still run Triton: ``last_key_pass_path`` says what ran."""
    from workbench_kernels.key_pass_selection import choose

    return choose(device)


def last_key_pass_path():
    """The ``KeyPassPath`` of the last ``key_statistics`` call in this process (None before the first)."""
    return _last_key_pass


def probability_tile(
    q: Tensor,
    k: Tensor,
    lse: Tensor,
    *,
    scaling: float,
    head: int,
    query_range: tuple[int, int],
    key_range: tuple[int, int],
    causal: bool = True,
    logit_bias: Tensor | None = None,
) -> Tensor:
    """Exact probabilities p[head, q0:q1, k0:k1] as (B, q1 - q0, k1 - k0) fp32, from Q, K and the lse."""
    _check_inputs(q, k, None, causal=causal, logit_bias=logit_bias)
    batch, heads, q_len, _ = q.shape
    k_len = k.shape[2]
    if not 0 <= head < heads:
        raise ValueError(f"head {head} is out of range: q has {heads} heads")
    q0, q1 = (int(x) for x in query_range)
    k0, k1 = (int(x) for x in key_range)
    if not (0 <= q0 <= q1 <= q_len and 0 <= k0 <= k1 <= k_len):
        raise ValueError(
            f"query_range {query_range} / key_range {key_range} must lie in [0, {q_len}] / [0, {k_len}]"
        )
    if tuple(lse.shape) != (batch, heads, q_len):
        raise ValueError(f"lse must be (B, H, Tq) = {(batch, heads, q_len)}; got {tuple(lse.shape)}")
    if uses_triton(q):
        import torch
        from workbench_kernels.probability_tiles import probability_tile_launch

        with _device_guard(q):
            return probability_tile_launch(
                q,
                k,
                lse.to(device=q.device, dtype=torch.float32).contiguous(),
                scaling=float(scaling),
                head=head,
                query_range=(q0, q1),
                key_range=(k0, k1),
                causal=bool(causal),
                logit_bias=logit_bias,
            )
    import torch
    from workbench_kernels.reference import probability_tile_reference

    return probability_tile_reference(
        q,
        k,
        scaling=scaling,
        head=head,
        query_range=(q0, q1),
        key_range=(k0, k1),
        causal=causal,
        logit_bias=logit_bias,
        dtype=torch.float32,
    ).contiguous()
