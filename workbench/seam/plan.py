"""What the seam must do at one layer for one forward call, resolved from a spec and interventions."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.seam.interventions import (
    HeadGate,
    HeadOutputAffine,
    Intervention,
    LogitBias,
    OutputEdit,
    ProbabilityEdit,
    UniformAttention,
)
from workbench.seam.spec import CaptureSpec


@dataclass
class LayerPlan:
    """Everything the attention computation at one layer needs to know.

    ``capture_heads`` is None when nothing is captured at this layer.
    """

    spec: CaptureSpec
    capture_heads: list[int] | None
    phase: str
    uniform_heads: list[int] = field(default_factory=list)
    logit_biases: list[LogitBias] = field(default_factory=list)
    prob_edits: dict[int, list[ProbabilityEdit]] = field(default_factory=dict)
    output_edits: dict[int, list[OutputEdit]] = field(default_factory=dict)

    @property
    def is_plain(self) -> bool:
        """True when the layer can run as ordinary attention (no capture, no intervention)."""
        return (
            self.capture_heads is None
            and not self.uniform_heads
            and not self.logit_biases
            and not self.prob_edits
            and not self.output_edits
        )

    @property
    def only_output_edits(self) -> bool:
        """True when the layer's attention is ordinary and only its per-head output is edited (LoFiT)."""
        return (
            bool(self.output_edits)
            and self.capture_heads is None
            and not self.uniform_heads
            and not self.logit_biases
            and not self.prob_edits
        )

    def apply_output_edits(self, output: torch.Tensor) -> torch.Tensor:
        """output (batch, q, head, dim) with every output edit applied to its head's slice."""
        edits = self.output_edits
        if all(len(e) == 1 and type(e[0]) is HeadOutputAffine for e in edits.values()):
            return self._apply_affine(output)
        pieces = list(output.unbind(2))
        for head, edits in self.output_edits.items():
            for edit in edits:
                pieces[head] = edit.apply(pieces[head])
        return torch.stack(pieces, dim=2)

    def _apply_affine(self, output: torch.Tensor) -> torch.Tensor:
        """One affine edit per head as two whole-layer ops: z * (1 + scale) + offset, with scale and
        offset 0 for unedited heads (the same arithmetic per element as ``HeadOutputAffine.apply``,
        in a handful of kernels instead of a few per head: LoFiT's step 1 edits every head)."""
        num_heads, dim = output.shape[2], output.shape[3]
        zeros = output.new_zeros(dim)

        def stacked(name: str) -> torch.Tensor | None:
            values = [
                getattr(self.output_edits[h][0], name) if h in self.output_edits else None
                for h in range(num_heads)
            ]
            if all(v is None for v in values):
                return None
            return torch.stack(
                [
                    zeros if v is None else torch.as_tensor(v, dtype=output.dtype, device=output.device)
                    for v in values
                ]
            )

        scale, offset = stacked("scale"), stacked("offset")
        if scale is not None:
            output = output * (1 + scale)
        if offset is not None:
            output = output + offset
        return output

    @property
    def needs_all_queries(self) -> bool:
        return any(e.needs_all_queries for edits in self.prob_edits.values() for e in edits)

    def bias_matrix(self, num_heads: int, num_keys: int, device) -> torch.Tensor | None:
        """Dense (head, key) fp32 additive bias, or None when there is none."""
        if not self.logit_biases:
            return None
        bias = torch.zeros(num_heads, num_keys, dtype=torch.float32)
        for item in self.logit_biases:
            item.add_to(bias[item.head])
        return bias.to(device)

    def head_gates(self, num_heads: int, device) -> torch.Tensor | None:
        """Per-head scalar gates when every output edit is a HeadGate (kernel-friendly), else None."""
        if not self.output_edits:
            return None
        gates = torch.ones(num_heads, dtype=torch.float32)
        for head, edits in self.output_edits.items():
            for edit in edits:
                if not isinstance(edit, HeadGate):
                    return None
                gates[head] *= edit.gate
        return gates.to(device)


def phase_of(query_length: int, key_length: int) -> str:
    return "decode" if query_length == 1 and key_length > 1 else "prefill"


def make_plan(
    spec: CaptureSpec | None, interventions: list[Intervention], layer: int, phase: str, num_heads: int
):
    capture_heads = None
    if spec is not None and spec.captures_anything and spec.wants_layer(layer):
        capture_heads = list(spec.heads) if spec.heads is not None else list(range(num_heads))
    plan = LayerPlan(spec=spec or CaptureSpec(statistics=()), capture_heads=capture_heads, phase=phase)
    for item in interventions:
        if item.layer != layer or not item.active(phase) or item.is_identity:
            continue
        if isinstance(item, UniformAttention):
            plan.uniform_heads.append(item.head)
        elif isinstance(item, LogitBias):
            plan.logit_biases.append(item)
        elif isinstance(item, ProbabilityEdit):
            plan.prob_edits.setdefault(item.head, []).append(item)
        elif isinstance(item, OutputEdit):
            plan.output_edits.setdefault(item.head, []).append(item)
        else:
            raise TypeError(f"intervention {item!r} has no stage the seam knows")
    return plan
