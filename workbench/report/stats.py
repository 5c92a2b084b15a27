"""Uncertainty for the results docs: percentile bootstrap intervals and paired sign-flip tests.

Both are seeded, so a table rendered twice from the same raw file is byte-identical (the docs test
relies on that).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 10_000
SEED = 0


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per item: run, question)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def verdict_above_zero(low: float, high: float) -> str:
    """The verdict of a claim "difference > 0" from its interval: above 0, at or below 0, or neither."""
    return "reproduced" if low > 0 else "not reproduced" if high <= 0 else "inconclusive"


def paired_test(
    a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED
) -> float:
    """Two-sided p-value of mean(a - b) = 0 by random sign flips of the per-item differences."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.size == 0:
        raise ValueError("paired_test needs at least one pair")
    observed = abs(diff.mean())
    if observed == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, diff.size))
    flipped = np.abs((signs * diff).mean(axis=1))
    return float((1 + (flipped >= observed - 1e-12).sum()) / (resamples + 1))


def bootstrap_ci_two_level(
    matrix: Sequence[Sequence[float]], level: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """Percentile interval of the grand mean of ``matrix`` (rows: random draws, e.g. fixed head sets;
    columns: items, e.g. NIAH runs), resampling rows and columns independently with replacement, so the
    spread between draws counts as well as the spread between items."""
    data = np.asarray(matrix, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise ValueError("bootstrap_ci_two_level needs a non-empty (draws, items) matrix")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, data.shape[0], size=(resamples, data.shape[0]))
    columns = rng.integers(0, data.shape[1], size=(resamples, data.shape[1]))
    row_means = np.stack([data[rows[b]][:, columns[b]].mean() for b in range(resamples)])
    tail = (1 - level) / 2
    low, high = np.quantile(row_means, [tail, 1 - tail])
    return float(low), float(high)
