"""Head groups, WAAD/FAI of a group, and preplan/anchor token detection (spec §4).

Everything here is a pure function of arrays, so the same code runs on a capture from the seam and on
planted patterns in tests. Indices are positions within the response R (0 = first generated token).

Why statistics and not maps: WAAD and FAI are linear in the attention map, so the WAAD of a group's
head-averaged map is the mean of the per-head ``waad`` rows, and its FAI is the mean of the per-head
``fai`` key statistics (the FAI denominator |T(s)| does not depend on the head). No T x T map is kept.
"""

from __future__ import annotations

import math

import numpy as np


def middle_third(num_layers: int) -> tuple[int, ...]:
    """Layers floor(L/3) .. floor(2L/3), inclusive (the paper's middle third)."""
    return tuple(range(num_layers // 3, (2 * num_layers) // 3 + 1))


def group_heads(distance: np.ndarray, fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Split heads by mean backward distance d (any shape, e.g. (layer, head)).

    Returns boolean masks (local, global) of the same shape: the ``fraction`` of heads with the smallest
    d, and the ``fraction`` with the largest (at least one head each). Ties break by flat index.
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"the head-group fraction must be in (0, 0.5], got {fraction}")
    flat = np.asarray(distance, dtype=np.float64).ravel()
    count = max(1, round(fraction * flat.size))
    order = np.argsort(flat, kind="stable")
    local = np.zeros(flat.size, dtype=bool)
    global_ = np.zeros(flat.size, dtype=bool)
    local[order[:count]] = True
    global_[order[-count:]] = True
    return local.reshape(np.shape(distance)), global_.reshape(np.shape(distance))


def fai_defined(
    num_response: int, prompt_length: int, total_length: int, window: tuple[int, int]
) -> np.ndarray:
    """Which response keys s have a non-empty T(s) = {t in R : s + H_lo <= t <= min(N-1, s + H_hi)}."""
    low = window[0]
    absolute = prompt_length + np.arange(num_response)
    return absolute + low <= total_length - 1


def waad_delta(waad: np.ndarray) -> np.ndarray:
    """Delta_t = |WAAD_t - WAAD_{t+1}|; NaN at the last token (no t+1)."""
    waad = np.asarray(waad, dtype=np.float64)
    delta = np.full(waad.shape, np.nan)
    delta[:-1] = np.abs(waad[:-1] - waad[1:])
    return delta


def top_fraction(values: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the top ``fraction`` of the finite values (ceil(fraction * n) of them; ties at the cut
    are all kept). NaN is never selected."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    n = int(finite.sum())
    if n == 0 or fraction <= 0:
        return np.zeros(values.shape, dtype=bool)
    count = min(n, math.ceil(fraction * n))
    cut = np.sort(values[finite])[::-1][count - 1]
    return finite & (values >= cut)


def preplan_tokens(waad: np.ndarray, fraction: float = 0.4) -> np.ndarray:
    """T_loc: tokens whose |Delta WAAD| is in the top ``fraction``."""
    return top_fraction(waad_delta(waad), fraction)


def anchor_tokens(fai: np.ndarray, fraction: float = 0.4) -> np.ndarray:
    """T_glob: tokens whose FAI is in the top ``fraction`` (NaN = undefined FAI, never an anchor)."""
    return top_fraction(fai, fraction)


def locally_dominated(
    waad: np.ndarray,
    anchors: np.ndarray,
    *,
    tau_waad: float | None = None,
    tau_delta: float | None = None,
    lookback: int = 3,
    preplan_fraction: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """Anchors that sit just after a WAAD jump, inside a locally planned chunk (the set D of §4).

    An anchor t is in D when WAAD_t <= tau_waad and max_{u in [t-k, t-1]} Delta_u >= tau_delta (k =
    ``lookback``). The spec leaves both thresholds open; defaults are per response: tau_waad = the median
    WAAD, tau_delta = the Delta cut that defines preplan tokens. intro(t) is the WAAD peak of the window
    [t-k, t-1] (the token that opened the chunk).

    Returns (dominated mask, intro position per token or -1).
    """
    waad = np.asarray(waad, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=bool)
    delta = waad_delta(waad)
    if tau_waad is None:
        tau_waad = float(np.median(waad)) if waad.size else 0.0
    if tau_delta is None:
        preplan = top_fraction(delta, preplan_fraction)
        tau_delta = float(np.min(delta[preplan])) if preplan.any() else math.inf
    dominated = np.zeros(waad.shape, dtype=bool)
    intro = np.full(waad.shape, -1, dtype=np.int64)
    for t in np.flatnonzero(anchors):
        start = max(0, t - lookback)
        if start >= t or waad[t] > tau_waad:
            continue
        window = delta[start:t]
        if np.nanmax(window) >= tau_delta:
            dominated[t] = True
            intro[t] = start + int(np.argmax(waad[start:t]))
    return dominated, intro


def group_rhythm(
    mean_distance: np.ndarray,
    waad: np.ndarray,
    fai: np.ndarray,
    prompt_length: int,
    *,
    group_fraction: float = 0.3,
    fai_window: tuple[int, int] = (10, 100),
) -> dict[str, np.ndarray]:
    """WAAD and FAI of the response from per-head seam statistics.

    Args:
        mean_distance, waad: row statistics (layer, head, position) over prompt + response.
        fai: key statistic (layer, head, position).
        prompt_length: |prompt|; the response is every later position.
    Returns ``distance`` (layer, head; d over response rows), ``local`` / ``global`` head masks, and the
    response's ``waad`` (local group) and ``fai`` (global group; NaN where T(s) is empty).
    """
    total = np.shape(waad)[-1]
    n = total - prompt_length
    if n < 1:
        raise ValueError(f"no response positions: prompt_length {prompt_length} >= sequence length {total}")
    distance = np.asarray(mean_distance, dtype=np.float64)[..., prompt_length:].mean(-1)
    local, global_ = group_heads(distance, group_fraction)
    response_waad = np.asarray(waad, dtype=np.float64)[..., prompt_length:][local].mean(0)
    response_fai = np.asarray(fai, dtype=np.float64)[..., prompt_length:][global_].mean(0)
    response_fai = np.where(fai_defined(n, prompt_length, total, fai_window), response_fai, np.nan)
    return {
        "distance": distance,
        "local": local,
        "global": global_,
        "waad": response_waad,
        "fai": response_fai,
    }
