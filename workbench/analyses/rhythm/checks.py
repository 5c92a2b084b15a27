"""The spec's four analysis tests (§4 small reproduction, (a)-(d)), each against a shuffled control and
with a bootstrap interval over responses (seeded, so a rerun gives the same numbers).

(a) head groups: are the local / global head sets the same heads across responses? Mean pairwise Jaccard
    of the groups vs groups of the same size drawn at random per response.
(b) entropy lift at WAAD peaks (preplan tokens, top ``q`` of |Delta WAAD|, producing entropy) vs random
    same-size token subsets per response (``statistics.entropy_lift``).
(c) FAI/WAAD coupling: share of FAI peaks with a WAAD peak at most ``lag`` tokens before (or at) them vs
    the WAAD peaks redrawn at random per response (``statistics.coupling``).
(d) perturbation: Jaccard of the continuation after a low-FAI swap minus after a high-FAI swap (> 0: the
    high-FAI swap moved it more) vs random sign flips of the per-pair differences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.analyses.rhythm.detect import top_fraction
from workbench.analyses.rhythm.statistics import coupling, entropy_lift

RESAMPLES = 10_000


def _p_greater(observed: float, null: np.ndarray) -> float:
    return float((1 + (null >= observed).sum()) / (1 + null.size))


def bootstrap_ratio(
    numerator, denominator, *, offset: float = 0.0, resamples: int = RESAMPLES, seed: int = 0
):
    """95% percentile interval of sum(numerator) / sum(denominator) - offset over responses resampled."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, numerator.size, size=(resamples, numerator.size))
    values = numerator[index].sum(1) / np.maximum(denominator[index].sum(1), 1e-300) - offset
    low, high = np.quantile(values, [0.025, 0.975])
    return [float(low), float(high)]


def _mean_jaccard(masks: np.ndarray) -> np.ndarray:
    """Per response: mean Jaccard of its head set with every other response's (masks (R, heads) bool)."""
    m = masks.astype(np.float64)
    inter = m @ m.T
    sizes = m.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    np.fill_diagonal(jaccard, np.nan)
    return np.nanmean(jaccard, axis=1)


def group_consistency(masks: Sequence[np.ndarray], *, shuffles: int = 1000, seed: int = 0) -> dict:
    """Test (a) for one group: observed mean pairwise Jaccard vs random head sets of the same sizes."""
    masks = np.stack([np.asarray(m, bool).ravel() for m in masks])
    observed = _mean_jaccard(masks)
    rng = np.random.default_rng(seed)
    null_means, null_per = np.zeros(shuffles), np.zeros(masks.shape[0])
    for s in range(shuffles):
        shuffled = np.take_along_axis(masks, np.argsort(rng.random(masks.shape), axis=1), axis=1)
        per = _mean_jaccard(shuffled)
        null_means[s], null_per = per.mean(), null_per + per / shuffles
    diff = observed - null_per
    rng_ci = np.random.default_rng(seed)
    boot = diff[rng_ci.integers(0, diff.size, size=(RESAMPLES, diff.size))].mean(1)
    return {
        "statistic": "mean pairwise Jaccard of the group's heads across responses",
        "observed": float(observed.mean()),
        "shuffled_mean": float(null_means.mean()),
        "value": float(diff.mean()),
        "ci": [float(x) for x in np.quantile(boot, [0.025, 0.975])],
        "p_value": _p_greater(float(observed.mean()), null_means),
        "n": int(masks.shape[0]),
        "shuffles": shuffles,
    }


def entropy_test(
    entropy: Sequence[np.ndarray], peaks: Sequence[np.ndarray], *, shuffles: int = 1000, seed: int = 0
) -> dict:
    """Test (b): the pooled lift (mean at peaks / mean over all - 1), its shuffled control and an interval."""
    result = entropy_lift(entropy, peaks, shuffles=shuffles, seed=seed)
    sums = []
    for values, mask in zip(entropy, peaks, strict=True):
        values = np.asarray(values, float)
        keep = np.isfinite(values)
        values, mask = values[keep], np.asarray(mask, bool)[keep]
        if values.size:
            sums.append((values[mask].sum(), mask.sum(), values.sum(), values.size))
    sums = np.array(sums, dtype=float)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(sums), size=(RESAMPLES, len(sums)))
    s = sums[index].sum(1)  # (resamples, 4)
    lifts = (s[:, 0] / np.maximum(s[:, 1], 1)) / (s[:, 2] / s[:, 3]) - 1
    return {
        "statistic": "entropy at preplan tokens / mean entropy - 1 (producing distribution)",
        "value": result["lift"],
        "ci": [float(x) for x in np.quantile(lifts, [0.025, 0.975])],
        "shuffled_mean": result["random_subset_mean"] / result["mean_all"] - 1
        if result["mean_all"]
        else None,
        "p_value": result["p_value"],
        "n": result["responses"],
        "detail": result,
    }


def coupling_test(
    fai: Sequence[np.ndarray],
    delta: Sequence[np.ndarray],
    *,
    fraction: float,
    lag: int,
    shuffles: int = 1000,
    seed: int = 0,
) -> dict:
    """Test (c): coupling rate minus its shuffled mean, with the pooled p-value and a bootstrap interval
    over responses (per response: hits and the shuffled expectation of hits)."""
    fai_peaks = [top_fraction(f, fraction) for f in fai]
    waad_peaks = [top_fraction(d, fraction) for d in delta]
    valid = [np.isfinite(d) for d in delta]
    pooled = coupling(fai_peaks, waad_peaks, valid, lag=lag, shuffles=shuffles, seed=seed)
    hits, expected, anchors = [], [], []
    for i, (a, w, v) in enumerate(zip(fai_peaks, waad_peaks, valid, strict=True)):
        if not a.any():
            continue
        one = coupling([a], [w], [v], lag=lag, shuffles=200, seed=seed + i)
        hits.append(one["rate"] * one["anchors"])
        expected.append(one["shuffled_mean"] * one["anchors"])
        anchors.append(one["anchors"])
    hits, expected, anchors = (np.array(x, float) for x in (hits, expected, anchors))
    rng = np.random.default_rng(seed)
    index = rng.integers(0, hits.size, size=(RESAMPLES, hits.size))
    diffs = (hits[index].sum(1) - expected[index].sum(1)) / anchors[index].sum(1)
    return {
        "statistic": f"share of FAI peaks (top {fraction:.0%}) with a WAAD peak <= {lag} tokens before, minus shuffled",
        "value": float((hits.sum() - expected.sum()) / anchors.sum()),
        "rate": pooled["rate"],
        "shuffled_mean": float(expected.sum() / anchors.sum()),  # per response, 200 shuffles each
        "pooled_shuffled_mean": pooled["shuffled_mean"],  # the p-value's shuffles
        "ci": [float(x) for x in np.quantile(diffs, [0.025, 0.975])],
        "p_value": pooled["p_value"],
        "n": int(hits.size),
        "anchors": pooled["anchors"],
    }


def perturbation_check(trials: Sequence[dict], *, shuffles: int = 10_000, seed: int = 0) -> dict:
    """Test (d): mean of Jaccard(low-FAI swap) - Jaccard(high-FAI swap) per pair; one-sided sign-flip p."""
    diffs = np.array([t["jaccard_low"] - t["jaccard_high"] for t in trials], float)
    if diffs.size == 0:
        return {"n": 0}
    rng = np.random.default_rng(seed)
    null = (rng.choice([-1.0, 1.0], size=(shuffles, diffs.size)) * diffs).mean(1)
    boot = diffs[rng.integers(0, diffs.size, size=(RESAMPLES, diffs.size))].mean(1)
    return {
        "statistic": "Jaccard after a low-FAI swap - after a high-FAI swap (> 0: high-FAI moved it more)",
        "value": float(diffs.mean()),
        "ci": [float(x) for x in np.quantile(boot, [0.025, 0.975])],
        "shuffled_mean": float(null.mean()),
        "p_value": _p_greater(float(diffs.mean()), null),
        "high_moved_more_rate": float((diffs > 0).mean()),
        "n": int(diffs.size),
    }
