"""Interventions on attention: small frozen dataclasses that round-trip through JSON and compose.

Each names one query head by ``(layer, head)`` and acts at one of four points inside the seam:

* ``query``   - before the scores (``UniformAttention`` zeroes the query: uniform over visible keys);
* ``logits``  - additive bias on the scores of chosen keys (``LogitBias``; ZeroTuning uses ln(gamma));
* ``probs``   - an edit of the probability rows (``ScaleKeys`` here; ACT, VAR, SoftPAG in their modules);
* ``output``  - the head's output before o_proj (``HeadGate``, ``HeadOutputAffine``, ``HeadOutputReplace``).

``scope`` says when it acts: ``prefill`` (a forward that feeds more than one query), ``decode``
(one query against a longer cache) or ``both``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from workbench.seam.spec import SpecError

SCOPES = ("prefill", "decode", "both")
_REGISTRY: dict[str, type[Intervention]] = {}


def register_intervention(cls):
    """Class decorator: make an intervention kind loadable from JSON by its ``kind`` name."""
    _REGISTRY[cls.kind] = cls
    return cls


def _vector(value):
    if value is None or isinstance(value, torch.Tensor):
        return value
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class Intervention:
    layer: int
    head: int
    scope: str = "both"

    kind: ClassVar[str] = "base"
    stage: ClassVar[str] = "none"

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise SpecError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        object.__setattr__(self, "layer", int(self.layer))
        object.__setattr__(self, "head", int(self.head))

    def active(self, phase: str) -> bool:
        return self.scope == "both" or self.scope == phase

    @property
    def is_identity(self) -> bool:
        """True when the intervention provably changes nothing (skipped, so outputs stay bit-identical)."""
        return False

    def to_dict(self) -> dict:
        out = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().tolist()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Intervention:
        data = dict(data)
        kind = data.pop("kind", None)
        target = _REGISTRY.get(kind)
        if target is None:
            raise SpecError(f"unknown intervention kind {kind!r}; known kinds: {sorted(_REGISTRY)}")
        known = {f.name for f in fields(target)}
        extra = sorted(set(data) - known)
        if extra:
            raise SpecError(f"unknown field(s) {extra} for intervention {kind!r}; known: {sorted(known)}")
        try:
            return target(**data)
        except TypeError as error:
            raise SpecError(f"malformed intervention {kind!r}: {error}") from None


# --- query stage -------------------------------------------------------------------------------


@register_intervention
@dataclass(frozen=True)
class UniformAttention(Intervention):
    """Attention made uniform over the visible keys (the retrieval-head mask): the query is set to zero."""

    kind: ClassVar[str] = "uniform"
    stage: ClassVar[str] = "query"


# --- logits stage ------------------------------------------------------------------------------


@register_intervention
@dataclass(frozen=True)
class LogitBias(Intervention):
    """Add ``bias`` to the scores of keys ``keys`` (explicit positions) and/or ``key_range`` [start, end)."""

    keys: tuple[int, ...] = ()
    key_range: tuple[int, int] | None = None
    bias: float = 0.0

    kind: ClassVar[str] = "logit_bias"
    stage: ClassVar[str] = "logits"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "keys", tuple(int(k) for k in self.keys))
        if self.key_range is not None:
            object.__setattr__(self, "key_range", tuple(int(k) for k in self.key_range))
        if not self.keys and self.key_range is None:
            raise SpecError("LogitBias needs keys=(...) or key_range=(start, end)")

    @property
    def is_identity(self) -> bool:
        return self.bias == 0.0

    def add_to(self, bias_row: torch.Tensor) -> None:
        """Add this bias into ``bias_row`` (shape (key,)) in place, ignoring keys beyond its length."""
        n = bias_row.shape[0]
        keys = [k for k in self.keys if 0 <= k < n]
        if keys:
            bias_row[keys] += self.bias
        if self.key_range is not None:
            start, end = self.key_range
            bias_row[max(0, start) : min(n, end)] += self.bias


# --- probability stage -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbabilityEdit(Intervention):
    """Base for edits of the probability rows of one head.

    ``edit(p, query_positions)`` gets p of shape (batch, query, key) for this head (rows already causal)
    and returns the edited rows. Set ``needs_all_queries`` when the edit depends on statistics over all
    query rows (column means): the seam then processes this layer without query chunking.
    """

    stage: ClassVar[str] = "probs"
    needs_all_queries: ClassVar[bool] = False

    def edit(self, p: torch.Tensor, query_positions: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


@register_intervention
@dataclass(frozen=True)
class ScaleKeys(ProbabilityEdit):
    """Multiply the probability of keys ``keys`` by ``factor`` and renormalise each row.

    Mathematically the same as ``LogitBias(bias=ln(factor))``; kept as a probability edit so the two
    forms can be checked against each other.
    """

    keys: tuple[int, ...] = (0,)
    factor: float = 1.0

    kind: ClassVar[str] = "scale_keys"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "keys", tuple(int(k) for k in self.keys))
        if self.factor < 0:
            raise SpecError(f"ScaleKeys factor must be >= 0, got {self.factor}")

    @property
    def is_identity(self) -> bool:
        return self.factor == 1.0

    def edit(self, p, query_positions):
        keys = [k for k in self.keys if k < p.shape[-1]]
        scaled = p.clone()
        scaled[..., keys] = scaled[..., keys] * self.factor
        total = scaled.sum(-1, keepdim=True)
        return torch.where(total > 0, scaled / total.clamp_min(1e-30), scaled)


@register_intervention
@dataclass(frozen=True)
class StreamingMix(ProbabilityEdit):
    """DuoAttention's mix: p <- gate * p + (1 - gate) * p_stream, where p_stream is p restricted to the
    keys j < ``sink`` or i - j < ``recent`` and renormalised (causal attention over the sink and the
    recent window). ``gate`` may be a 0-d tensor that requires grad (gate training); 1 is full
    attention, 0 a streaming head.

    A layer whose only interventions are StreamingMix edits of one (sink, recent) runs as two SDPA calls
    (full and windowed) mixed per head (``workbench.seam.streaming``): head outputs are linear in the
    probability row, so that equals this per-head edit, without a probability edit per head.
    """

    sink: int = 16
    recent: int = 64
    gate: float | torch.Tensor = 1.0

    kind: ClassVar[str] = "streaming_mix"

    def __post_init__(self):
        super().__post_init__()
        if self.sink < 0 or self.recent < 1:
            raise SpecError(f"StreamingMix needs sink >= 0 and recent >= 1, got {self.sink}, {self.recent}")

    @property
    def is_identity(self) -> bool:
        return not isinstance(self.gate, torch.Tensor) and float(self.gate) == 1.0

    def window(self, query_positions: torch.Tensor, num_keys: int) -> torch.Tensor:
        """Bool (query, key): the sink keys and the ``recent`` keys ending at each query (itself included)."""
        keys = torch.arange(num_keys, device=query_positions.device)
        return (keys[None, :] < self.sink) | ((query_positions[:, None] - keys[None, :]) < self.recent)

    def edit(self, p, query_positions):
        p = p.clone()  # the seam writes the result back into the tensor p views; autograd needs our own copy
        stream = p * self.window(query_positions, p.shape[-1])
        stream = stream / stream.sum(-1, keepdim=True).clamp_min(1e-30)
        gate = torch.as_tensor(self.gate, dtype=p.dtype, device=p.device)
        return gate * p + (1 - gate) * stream


# --- output stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputEdit(Intervention):
    """Base for edits of one head's output z (batch, query, head_dim) before o_proj."""

    stage: ClassVar[str] = "output"

    def apply(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


@register_intervention
@dataclass(frozen=True)
class HeadGate(OutputEdit):
    """z <- gate * z. A gate of 0 removes the head (zero ablation); a gate of 1 changes nothing."""

    gate: float = 1.0

    kind: ClassVar[str] = "head_gate"

    @property
    def is_identity(self) -> bool:
        return self.gate == 1.0

    def apply(self, z):
        return z * self.gate


@register_intervention
@dataclass(frozen=True)
class HeadOutputAffine(OutputEdit):
    """z <- (1 + scale) * z + offset, per head-dimension vector (LoFiT's A and v)."""

    scale: tuple[float, ...] | torch.Tensor | None = None
    offset: tuple[float, ...] | torch.Tensor | None = None

    kind: ClassVar[str] = "head_affine"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "scale", _vector(self.scale))
        object.__setattr__(self, "offset", _vector(self.offset))

    def apply(self, z):
        if self.scale is not None:
            z = z * (1 + torch.as_tensor(self.scale, dtype=z.dtype, device=z.device))
        if self.offset is not None:
            z = z + torch.as_tensor(self.offset, dtype=z.dtype, device=z.device)
        return z


@register_intervention
@dataclass(frozen=True)
class HeadOutputReplace(OutputEdit):
    """z <- vector at every query (mean ablation, with the mean over a reference set)."""

    vector: tuple[float, ...] | torch.Tensor = ()

    kind: ClassVar[str] = "head_replace"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "vector", _vector(self.vector))

    def apply(self, z):
        return torch.as_tensor(self.vector, dtype=z.dtype, device=z.device).expand_as(z).clone()


# --- helpers ----------------------------------------------------------------------------------


def mask_heads(heads: Iterable[tuple[int, int]], mode: str = "uniform", scope: str = "both", means=None):
    """Interventions that knock out ``heads``: ``uniform`` attention, ``zero`` output or ``mean`` output.

    ``means`` maps (layer, head) to the head's mean output vector, needed for ``mean``.
    """
    out: list[Intervention] = []
    for layer, head in heads:
        if mode == "uniform":
            out.append(UniformAttention(layer, head, scope=scope))
        elif mode == "zero":
            out.append(HeadGate(layer, head, scope=scope, gate=0.0))
        elif mode == "mean":
            if means is None or (layer, head) not in means:
                raise SpecError(f"mean masking of head ({layer}, {head}) needs its mean output (means=...)")
            out.append(HeadOutputReplace(layer, head, scope=scope, vector=means[(layer, head)]))
        else:
            raise SpecError(f"unknown mask mode {mode!r}; choose uniform, zero or mean")
    return out


def interventions_to_json(interventions: Sequence[Intervention]) -> str:
    return json.dumps([i.to_dict() for i in interventions])


def interventions_from_json(text: str) -> list[Intervention]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"interventions are not valid JSON: {error}") from None
    if isinstance(data, dict) and "interventions" in data:
        data = data["interventions"]
    if not isinstance(data, list):
        raise SpecError("interventions JSON must be a list (or an object with an 'interventions' list)")
    return [Intervention.from_dict(d) for d in data]


def validate_interventions(interventions: Sequence[Intervention], num_layers: int, num_heads: int) -> None:
    for item in interventions:
        if not isinstance(item, Intervention):
            raise SpecError(f"not an intervention: {item!r}")
        if not 0 <= item.layer < num_layers:
            raise SpecError(
                f"{type(item).__name__} names layer {item.layer}: the model has {num_layers} layers (0..{num_layers - 1})"
            )
        if not 0 <= item.head < num_heads:
            raise SpecError(
                f"{type(item).__name__} names head {item.head}: the model has {num_heads} query heads (0..{num_heads - 1})"
            )


__all__ = [
    "Intervention",
    "UniformAttention",
    "LogitBias",
    "ProbabilityEdit",
    "ScaleKeys",
    "StreamingMix",
    "OutputEdit",
    "HeadGate",
    "HeadOutputAffine",
    "HeadOutputReplace",
    "mask_heads",
    "register_intervention",
    "interventions_to_json",
    "interventions_from_json",
    "validate_interventions",
]
