"""Per-token credit weights gamma_t for RL advantage shaping (spec §4): A~_t = gamma_t * A_t.

Pure functions of boolean token sets; gamma is meant to be detached from the graph. ``amplification``
is gamma for a fully credited token (1.5 in the paper), so the bonus is ``amplification - 1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from workbench.analyses.rhythm.detect import anchor_tokens, locally_dominated, preplan_tokens


@dataclass(frozen=True)
class RhythmParams:
    """Knobs of detection and credit. alpha, tau_waad and tau_delta are not given in the paper's text
    (spec §10.7): alpha = 0.5 splits a dominated anchor's bonus evenly with its intro token; None
    thresholds mean per-response defaults (median WAAD; the preplan Delta cut)."""

    waad_window: int = 10
    fai_window: tuple[int, int] = (10, 100)
    group_fraction: float = 0.3
    preplan_fraction: float = 0.4
    anchor_fraction: float = 0.4
    amplification: float = 1.5
    alpha: float = 0.5
    tau_waad: float | None = None
    tau_delta: float | None = None
    lookback: int = 3

    def __post_init__(self):
        object.__setattr__(self, "fai_window", tuple(int(x) for x in self.fai_window))
        for name in ("preplan_fraction", "anchor_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.lookback < 1:
            raise ValueError(f"lookback must be >= 1, got {self.lookback}")

    def to_dict(self) -> dict:
        return asdict(self)


def credit_local(preplan: np.ndarray, amplification: float = 1.5) -> np.ndarray:
    """Local-chunk credit: gamma_t = 1 + (amp - 1) * 1{t in T_loc}."""
    return 1.0 + (amplification - 1.0) * np.asarray(preplan, dtype=np.float64)


def credit_global(anchors: np.ndarray, amplification: float = 1.5) -> np.ndarray:
    """Global-anchor credit: gamma_t = 1 + (amp - 1) * 1{t in T_glob}."""
    return 1.0 + (amplification - 1.0) * np.asarray(anchors, dtype=np.float64)


def credit_coupled(
    anchors: np.ndarray,
    dominated: np.ndarray,
    intro: np.ndarray,
    *,
    alpha: float = 0.5,
    amplification: float = 1.5,
) -> np.ndarray:
    """Coupled rhythm credit: gamma_t = 1 + (amp - 1) * [1{T_glob \\ D} + (1 - alpha) 1{D} + alpha 1{intro(D)}].

    A locally dominated anchor hands a share alpha of its bonus to the token that opened its chunk.
    ``intro`` holds, per token, the intro position of a dominated anchor (-1 otherwise); an intro token
    shared by several anchors is credited once (the formula uses an indicator).
    """
    anchors = np.asarray(anchors, dtype=bool)
    dominated = np.asarray(dominated, dtype=bool) & anchors
    intro_set = np.zeros(anchors.shape, dtype=bool)
    targets = np.asarray(intro)[dominated]
    intro_set[targets[targets >= 0]] = True
    share = (anchors & ~dominated) + (1.0 - alpha) * dominated + alpha * intro_set
    return 1.0 + (amplification - 1.0) * share


def credit_weights(
    waad: np.ndarray, fai: np.ndarray, params: RhythmParams | None = None
) -> dict[str, np.ndarray]:
    """Token sets and the three gamma schemes for one response, from its WAAD and FAI sequences."""
    params = params or RhythmParams()
    preplan = preplan_tokens(waad, params.preplan_fraction)
    anchors = anchor_tokens(fai, params.anchor_fraction)
    dominated, intro = locally_dominated(
        waad,
        anchors,
        tau_waad=params.tau_waad,
        tau_delta=params.tau_delta,
        lookback=params.lookback,
        preplan_fraction=params.preplan_fraction,
    )
    return {
        "is_preplan": preplan,
        "is_anchor": anchors,
        "is_dominated": dominated,
        "intro_position": intro,
        "credit_local": credit_local(preplan, params.amplification),
        "credit_global": credit_global(anchors, params.amplification),
        "credit_coupled": credit_coupled(
            anchors, dominated, intro, alpha=params.alpha, amplification=params.amplification
        ),
    }
