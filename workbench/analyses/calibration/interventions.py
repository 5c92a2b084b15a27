"""Attention-calibration interventions: ACT, ZeroTuning, a VAR-style redistribution and SoftPAG.

All are frozen dataclasses that round-trip through JSON and act inside the one attention seam, so they
work on every runner (HF, TransformerLens, nnsight). ZeroTuning is a logit bias (ln gamma on key 0) so
it stays on the fast kernel path; the others edit the probability rows of one head.

Padding: the seam gives probability edits the rows of one head, ``p`` (batch, query, key). In a
right-padded batch the pad keys receive exactly zero from every query, so the valid length of each
sequence is the number of keys with a non-zero column; ACT's column means count only those queries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch

from workbench.seam.interventions import LogitBias, ProbabilityEdit, register_intervention
from workbench.seam.spec import SpecError

Heads = Iterable[tuple[int, int]]


def column_means(p: torch.Tensor, query_positions: torch.Tensor) -> torch.Tensor:
    """Mean attention each key receives from the (non-pad) queries that can see it.

    ``p``: (batch, query, key). Returns (batch, key); ``abar_j = sum_{i >= j} p_ij / #{i >= j}``.
    """
    num_keys = p.shape[-1]
    keys = torch.arange(num_keys, device=p.device)
    valid_length = (p.sum(-2) > 0).sum(-1)  # (batch,) right padding: pad keys get nothing
    queries = query_positions.to(p.device)
    sees = (queries[None, :, None] >= keys[None, None, :]) & (queries[None, :, None] < valid_length[:, None, None])
    count = sees.sum(-2).to(p.dtype)  # (batch, key)
    received = (p * sees).sum(-2)
    return torch.where(count > 0, received / count.clamp_min(1), torch.zeros_like(received))


def act_sinks(p: torch.Tensor, query_positions: torch.Tensor, threshold: float) -> torch.Tensor:
    """ACT's per-input sink set as a bool (batch, key): column mean above ``threshold``, minus its first element."""
    sinks = column_means(p, query_positions) > threshold
    first = torch.where(sinks.any(-1), sinks.to(torch.int8).argmax(-1), torch.full_like(sinks[:, 0], -1, dtype=torch.long))
    keys = torch.arange(p.shape[-1], device=p.device)
    return sinks & (keys[None, :] != first[:, None])


def move_mass(p: torch.Tensor, source: torch.Tensor, target: torch.Tensor, keep: float) -> torch.Tensor:
    """Scale the mass on ``source`` keys by ``keep`` and hand the freed mass to ``target`` keys in proportion.

    ``source``/``target``: bool broadcastable to ``p``. Rows whose target mass is zero are left alone, so
    every row still sums to what it summed to before.
    """
    source_mass = (p * source).sum(-1, keepdim=True)
    target_mass = (p * target).sum(-1, keepdim=True)
    budget = (1.0 - keep) * source_mass
    share = torch.where(target_mass > 0, budget / target_mass.clamp_min(1e-30), torch.zeros_like(budget))
    edited = torch.where(source, p * keep, p)
    edited = torch.where(target, edited + p * share, edited)
    movable = (target_mass > 0) & (source_mass > 0)
    return torch.where(movable, edited, p)


@register_intervention
@dataclass(frozen=True)
class ACT(ProbabilityEdit):
    """ACT (Yu et al. 2024): per input, keys whose column mean exceeds ``threshold`` (bar the first such
    key, in practice token 0) are hidden sinks; each row keeps ``beta`` of its mass on them and hands the
    rest to the other keys in proportion to their attention. Prefill only by default."""

    threshold: float = 0.1
    beta: float = 0.4
    scope: str = "prefill"

    kind: ClassVar[str] = "act"
    needs_all_queries: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.beta <= 1.0:
            raise SpecError(f"ACT beta must be in [0, 1], got {self.beta}")
        if self.threshold <= 0:
            raise SpecError(f"ACT threshold must be > 0, got {self.threshold}")

    @property
    def is_identity(self) -> bool:
        return self.beta == 1.0

    def edit(self, p, query_positions):
        sinks = act_sinks(p, query_positions, self.threshold)[:, None, :]  # (batch, 1, key)
        keys = torch.arange(p.shape[-1], device=p.device)
        visible = keys[None, :] <= query_positions.to(p.device)[:, None]  # (query, key)
        return move_mass(p, sinks, (~sinks) & visible[None], self.beta)


@register_intervention
@dataclass(frozen=True)
class Redistribute(ProbabilityEdit):
    """VAR-style redistribution (Kang et al. 2025), text adaptation: rows of queries after the target
    span keep ``p`` of their attention to the ``sinks`` and give the freed mass to the non-sink keys of
    ``target`` [start, end) in proportion. Only rows that put at least ``min_target_mass`` on the span,
    and whose sink share inside the span is at most ``max_sink_share``, are edited (VAR's head/query test).
    """

    sinks: tuple[int, ...] = (0,)
    target: tuple[int, int] = (1, 1 << 30)
    p: float = 0.6
    min_target_mass: float = 0.2
    max_sink_share: float = 0.5
    after_target_only: bool = True

    kind: ClassVar[str] = "var"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "sinks", tuple(int(k) for k in self.sinks))
        object.__setattr__(self, "target", tuple(int(k) for k in self.target))
        if len(self.target) != 2 or not 0 <= self.target[0] < self.target[1]:
            raise SpecError(f"Redistribute target must be (start, end) with 0 <= start < end, got {self.target}")
        if not 0.0 <= self.p <= 1.0:
            raise SpecError(f"Redistribute p must be in [0, 1], got {self.p}")

    @property
    def is_identity(self) -> bool:
        return self.p == 1.0 or not self.sinks

    def edit(self, probs, query_positions):
        num_keys = probs.shape[-1]
        keys = torch.arange(num_keys, device=probs.device)
        positions = query_positions.to(probs.device)
        sink = torch.zeros(num_keys, dtype=torch.bool, device=probs.device)
        sink[[k for k in self.sinks if 0 <= k < num_keys]] = True
        start, end = self.target
        span = (keys >= start) & (keys < end)
        visible = keys[None, :] <= positions[:, None]  # (query, key)
        target = (span & ~sink)[None, :] & visible
        span_mass = (probs * span).sum(-1, keepdim=True)
        sink_in_span = (probs * (span & sink)).sum(-1, keepdim=True)
        selected = (span_mass >= self.min_target_mass) & (sink_in_span <= self.max_sink_share * span_mass)
        if self.after_target_only:
            selected = selected & (positions >= end)[None, :, None]
        edited = move_mass(probs, sink[None, None, :], target[None], self.p)
        return torch.where(selected, edited, probs)


@register_intervention
@dataclass(frozen=True)
class SoftPAG(ProbabilityEdit):
    """SoftPAG (Ahn et al. 2025): interpolate each row towards the identity, p' = (1 - u) p + u e_i."""

    u: float = 0.5

    kind: ClassVar[str] = "softpag"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.u <= 1.0:
            raise SpecError(f"SoftPAG u must be in [0, 1], got {self.u}")

    @property
    def is_identity(self) -> bool:
        return self.u == 0.0

    def edit(self, p, query_positions):
        keys = torch.arange(p.shape[-1], device=p.device)
        identity = (keys[None, :] == query_positions.to(p.device)[:, None]).to(p.dtype)  # (query, key)
        return (1.0 - self.u) * p + self.u * identity[None]


# --- builders ---------------------------------------------------------------------------------


def act(heads: Heads, threshold: float = 0.1, beta: float = 0.4, scope: str = "prefill") -> list[ACT]:
    return [ACT(layer, head, scope=scope, threshold=threshold, beta=beta) for layer, head in heads]


def zerotuning(heads: Heads, gamma: float, scope: str = "both") -> list[LogitBias]:
    """ZeroTuning: scale attention to token 0 by ``gamma`` and renormalise, run as a bias of ln(gamma)."""
    if gamma <= 0:
        raise SpecError(f"ZeroTuning gamma must be > 0, got {gamma}")
    bias = math.log(gamma)
    return [LogitBias(layer, head, scope=scope, keys=(0,), bias=bias) for layer, head in heads]


def redistribute(heads: Heads, target: tuple[int, int], sinks=(0,), p: float = 0.6, scope: str = "prefill", **options):
    return [Redistribute(layer, head, scope=scope, sinks=tuple(sinks), target=tuple(target), p=p, **options) for layer, head in heads]


def softpag(heads: Heads, u: float, scope: str = "both") -> list[SoftPAG]:
    return [SoftPAG(layer, head, scope=scope, u=u) for layer, head in heads]


METHODS = {"act": act, "zerotuning": zerotuning, "softpag": softpag}
