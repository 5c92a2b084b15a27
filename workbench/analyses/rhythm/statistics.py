"""Analysis statistics of the rhythm, each next to the baseline it must beat.

- entropy lift: next-token entropy at WAAD peaks against all response tokens (and against random token
  subsets of the same size, for a p-value);
- coupling: how often an FAI peak follows or coincides with a WAAD peak (within ``lag`` tokens),
  against the same rate when the WAAD peaks are moved to random positions of the same response.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _p_value(observed: float, null: np.ndarray, *, greater: bool = True) -> float:
    """One-sided permutation p-value with the +1 correction."""
    hits = (null >= observed).sum() if greater else (null <= observed).sum()
    return float((1 + hits) / (1 + null.size))


def entropy_lift(
    entropy: Sequence[np.ndarray], peaks: Sequence[np.ndarray], *, shuffles: int = 1000, seed: int = 0
) -> dict:
    """Mean entropy at peak tokens vs over all tokens, pooled over responses (NaN entropies dropped)."""
    rng = np.random.default_rng(seed)
    at_peaks, everywhere, null_sums, peak_total, responses_up = [], [], np.zeros(shuffles), 0, 0
    for values, mask in zip(entropy, peaks, strict=True):
        values = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(values)
        values, mask = values[keep], np.asarray(mask, dtype=bool)[keep]
        if values.size == 0:
            continue
        everywhere.append(values)
        at_peaks.append(values[mask])
        m = int(mask.sum())
        peak_total += m
        if m:
            responses_up += int(values[mask].mean() > values.mean())
            order = np.argsort(rng.random((shuffles, values.size)), axis=1)[:, :m]
            null_sums += values[order].sum(axis=1)
    all_values = np.concatenate(everywhere) if everywhere else np.array([])
    peak_values = np.concatenate(at_peaks) if at_peaks else np.array([])
    mean_all = float(all_values.mean()) if all_values.size else float("nan")
    mean_peak = float(peak_values.mean()) if peak_values.size else float("nan")
    null = null_sums / max(peak_total, 1)
    return {
        "mean_at_peaks": mean_peak,
        "mean_all": mean_all,
        "lift": mean_peak / mean_all - 1 if mean_all else float("nan"),
        "random_subset_mean": float(null.mean()),
        "p_value": _p_value(mean_peak, null) if peak_total else float("nan"),
        "peak_tokens": peak_total,
        "tokens": int(all_values.size),
        "responses_with_higher_peak_entropy": responses_up,
        "responses": len(everywhere),
    }


def coupled(anchors: np.ndarray, peaks: np.ndarray, lag: int) -> np.ndarray:
    """For each anchor s: is there a peak t with s - lag <= t <= s? ``peaks`` may be (n,) or (shuffles, n)."""
    peaks = np.asarray(peaks, dtype=np.int64)
    cumulative = np.concatenate([np.zeros(peaks.shape[:-1] + (1,), dtype=np.int64), np.cumsum(peaks, -1)], -1)
    s = np.flatnonzero(np.asarray(anchors, dtype=bool))
    start = np.clip(s - lag, 0, None)
    return (cumulative[..., s + 1] - cumulative[..., start]) > 0


def coupling(
    anchors: Sequence[np.ndarray],
    peaks: Sequence[np.ndarray],
    valid: Sequence[np.ndarray],
    *,
    lag: int = 1,
    shuffles: int = 1000,
    seed: int = 0,
) -> dict:
    """Fraction of anchors with a WAAD peak at most ``lag`` tokens before (or at) them, vs shuffled peaks.

    The baseline redraws each response's peaks (same count) uniformly among its ``valid`` positions (where
    the peak statistic is defined), keeping the anchors fixed, ``shuffles`` times with a fixed seed.
    """
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    rng = np.random.default_rng(seed)
    hits, total, null_hits = 0, 0, np.zeros(shuffles)
    for anchor, peak, ok in zip(anchors, peaks, valid, strict=True):
        anchor = np.asarray(anchor, dtype=bool)
        peak = np.asarray(peak, dtype=bool)
        positions = np.flatnonzero(np.asarray(ok, dtype=bool))
        if not anchor.any():
            continue
        total += int(anchor.sum())
        hits += int(coupled(anchor, peak, lag).sum())
        m = int(peak.sum())
        shuffled = np.zeros((shuffles, peak.size), dtype=bool)
        if m and positions.size:
            order = np.argsort(rng.random((shuffles, positions.size)), axis=1)[:, :m]
            np.put_along_axis(shuffled, positions[order], True, axis=1)
        null_hits += coupled(anchor, shuffled, lag).sum(axis=-1)
    rate = hits / total if total else float("nan")
    null = null_hits / max(total, 1)
    return {
        "lag": lag,
        "rate": rate,
        "shuffled_mean": float(null.mean()),
        "shuffled_std": float(null.std()),
        "p_value": _p_value(rate, null) if total else float("nan"),
        "anchors": total,
        "shuffles": shuffles,
    }


def jaccard(first: Sequence[int], second: Sequence[int]) -> float:
    """Jaccard similarity of two token sets (1.0 when both are empty)."""
    a, b = set(first), set(second)
    return len(a & b) / len(a | b) if a | b else 1.0
