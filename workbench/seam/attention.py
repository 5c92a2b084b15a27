"""The one attention seam: a function registered with transformers' AttentionInterface.

Every instrumented model routes each attention call through ``workbench_attention``. With no session
attached it is plain SDPA. Inside ``instrument(model, spec, interventions)`` the attention modules
carry a session that measures (statistics) and changes (interventions) attention; on exit the session
is detached and the model's previous attention implementation restored, even after an exception.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from workbench.adapters import Adapter, ModelShape, adapter_for
from workbench.seam import cuda_path, streaming, torch_path
from workbench.seam.interventions import Intervention, validate_interventions
from workbench.seam.plan import make_plan, phase_of
from workbench.seam.record import LayerRecord
from workbench.seam.spec import CaptureSpec

IMPLEMENTATION = "workbench"
_SESSION = "_workbench_session"
_LAYER = "_workbench_layer"


class CaptureError(RuntimeError):
    """A requested capture never fired: the seam was not reached for some requested layer."""


def _layer_of(module) -> int:
    layer = getattr(module, _LAYER, None)
    if layer is None:
        layer = getattr(module, "layer_idx", None)
    if layer is None:
        raise CaptureError(
            f"{type(module).__name__} has no layer index; instrument the model through its adapter"
        )
    return int(layer)


def plain_attention(query, key, value, mask, scaling, causal):
    """SDPA over unexpanded GQA K/V; returns (batch, q, head, dim)."""
    num_queries, num_keys = query.shape[2], key.shape[2]
    is_causal = False
    if mask is None and causal and num_queries > 1:
        if num_queries == num_keys:
            is_causal = True
        else:
            offset = num_keys - num_queries
            positions = torch.arange(num_queries, device=query.device) + offset
            mask = torch.arange(num_keys, device=query.device)[None, :] <= positions[:, None]
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(query.dtype)
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=mask,
        is_causal=is_causal,
        scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous()


def workbench_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The registered attention function (AttentionInterface signature)."""
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    causal = bool(kwargs.get("is_causal", getattr(module, "is_causal", True)))
    session = getattr(module, _SESSION, None)
    if session is None:
        return plain_attention(query, key, value, attention_mask, scaling, causal), None
    return session.attend(_layer_of(module), query, key, value, attention_mask, scaling, causal), None


AttentionInterface.register(IMPLEMENTATION, workbench_attention)
AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


SDPA_OUTPUT_EDITS = "sdpa+output-edits"  # backend name of output-only edits (Session.attend)


class Session:
    """One instrumented run: the plan per layer, and the records each forward call leaves."""

    def __init__(
        self, shape: ModelShape, spec: CaptureSpec | None, interventions: Sequence[Intervention], use_kernels
    ):
        self.shape = shape
        self.spec = spec
        self.interventions = list(interventions)
        self.use_kernels = use_kernels
        self.records: dict[int, list[LayerRecord]] = {}  # layer -> one record per call, in order
        self.calls: dict[int, int] = {}
        self.backends: dict[int, set[str]] = {}  # layer -> the backends that ran its instrumented calls
        self.progress = None  # a tqdm bar advanced once per layer call, when set

    def attend(self, layer, query, key, value, mask, scaling, causal):
        self.calls[layer] = self.calls.get(layer, 0) + 1
        if self.progress is not None:
            self.progress.update(1)
        phase = phase_of(query.shape[2], key.shape[2])
        plan = make_plan(self.spec, self.interventions, layer, phase, query.shape[1])
        if plan.is_plain:
            return plain_attention(query, key, value, mask, scaling, causal)
        if plan.only_output_edits and plan.head_gates(query.shape[1], query.device) is None:
            # e.g. LoFiT's scales and offsets: SDPA (differentiable, fused) and then the edits; scalar
            # gates alone stay below, where the Triton kernels fold them in
            output = plan.apply_output_edits(plain_attention(query, key, value, mask, scaling, causal))
            self.backends.setdefault(layer, set()).add(SDPA_OUTPUT_EDITS)
            return output.to(query.dtype)
        mix = streaming.layer_mix(plan, query.shape[1], query.device)
        if mix is not None:  # DuoAttention's gates: two SDPA calls mixed per head (seam/streaming.py)
            self.backends.setdefault(layer, set()).add(streaming.BACKEND)
            return streaming.attend(query, key, value, mask, scaling, causal, *mix)
        backend = torch_path.BACKEND
        if self.use_kernels == "always" or (self.use_kernels and query.is_cuda):
            reason = cuda_path.unsupported(query, mask, plan)
            if reason is None:
                backend = cuda_path.TRITON
            elif query.is_cuda or self.use_kernels == "always":  # the kernels were expected here
                warnings.warn(
                    f"attention on CUDA runs the PyTorch path, not the Triton kernels: {reason}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if backend == cuda_path.TRITON:
            output, record = cuda_path.attend(query, key, value, scaling=scaling, causal=causal, plan=plan)
        else:
            output, record = torch_path.attend(
                query, key, value, scaling=scaling, causal=causal, mask=mask, plan=plan
            )
        # the record's name when it has one: a capture whose key pass ran the Gluon kernel says triton+gluon-hopper
        self.backends.setdefault(layer, set()).add(record.backend if record is not None else backend)
        if record is not None:
            self.records.setdefault(layer, []).append(record)
        return output

    def backend(self) -> str | None:
        """Which backend ran the instrumented calls: one name, several joined by '+', or None."""
        names = sorted(set().union(*self.backends.values())) if self.backends else []
        return "+".join(names) or None

    def ran(self) -> set[str]:
        """Every backend this session ran, with "sdpa" for layer calls that needed no statistics (plain SDPA)."""
        names = set().union(*self.backends.values()) if self.backends else set()
        if any(layer not in self.backends for layer in self.calls):
            names.add("sdpa")
        return names

    def check_fired(self) -> None:
        """Raise CaptureError when a requested layer never reached the seam."""
        if self.spec is None or not self.spec.captures_anything:
            return
        wanted = self.spec.layers if self.spec.layers is not None else range(self.shape.num_layers)
        missing = [layer for layer in wanted if layer not in self.calls]
        if missing:
            raise CaptureError(
                f"requested capture never fired for layer(s) {missing}: the model did not route attention through "
                f"the '{IMPLEMENTATION}' seam (was the forward run inside instrument(...), and does this model "
                "support AttentionInterface?)"
            )


def _set_implementation(model, name: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name


@contextlib.contextmanager
def instrument(
    model,
    spec: CaptureSpec | None = None,
    interventions: Sequence[Intervention] = (),
    *,
    adapter: Adapter | None = None,
    use_kernels: bool | str = True,
) -> Iterator[Session]:
    """Route ``model``'s attention through the seam with ``spec`` and ``interventions`` for this block.

    ``use_kernels``: True uses the Triton kernels for CUDA tensors; "always" also for CPU tensors
    (Triton's interpreter when TRITON_INTERPRET=1, used by tests); False keeps the PyTorch path.

    The session is detached and the previous attention implementation restored on exit, also after an
    exception. Bad specs fail here, before anything runs.
    """
    adapter = adapter or adapter_for(model)
    shape = adapter.shape(model)
    if spec is not None:
        spec.validate_for(shape.num_layers, shape.num_heads)
    validate_interventions(interventions, shape.num_layers, shape.num_heads)
    modules = adapter.attention_modules(model)
    session = Session(shape, spec, interventions, use_kernels)
    previous = getattr(model.config, "_attn_implementation", None)
    attached = []
    try:
        if previous != IMPLEMENTATION:
            _set_implementation(model, IMPLEMENTATION)
        for index, module in enumerate(modules):
            setattr(module, _SESSION, session)
            setattr(module, _LAYER, index)
            attached.append(module)
        yield session
    finally:
        for module in attached:
            for name in (_SESSION, _LAYER):
                if hasattr(module, name):
                    delattr(module, name)
        if previous is not None and previous != IMPLEMENTATION:
            _set_implementation(model, previous)
