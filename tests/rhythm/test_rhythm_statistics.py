"""Analysis statistics against their baselines, on sequences with a planted answer."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analyses.rhythm import coupling, entropy_lift, jaccard
from workbench.analyses.rhythm.pipeline import sign_test
from workbench.analyses.rhythm.statistics import coupled


def test_coupled_window_semantics():
    anchors = np.zeros(10, dtype=bool)
    anchors[5] = True
    for peak, lag, expected in [(5, 0, True), (4, 0, False), (3, 2, True), (2, 2, False), (6, 3, False)]:
        peaks = np.zeros(10, dtype=bool)
        peaks[peak] = True
        assert bool(coupled(anchors, peaks, lag)[0]) is expected, (peak, lag)


def test_coupling_detects_planted_following_and_matches_chance_otherwise():
    rng = np.random.default_rng(0)
    anchors, peaks, valid, random_anchors = [], [], [], []
    for _ in range(20):
        n = 100
        peak = np.zeros(n, dtype=bool)
        peak[rng.choice(n - 2, 10, replace=False)] = True
        anchor = np.roll(peak, 1)  # every anchor right after a peak
        anchors.append(anchor)
        peaks.append(peak)
        valid.append(np.ones(n, dtype=bool))
        other = np.zeros(n, dtype=bool)
        other[rng.choice(n, 10, replace=False)] = True
        random_anchors.append(other)
    planted = coupling(anchors, peaks, valid, lag=1, shuffles=500)
    assert planted["rate"] == 1.0
    assert planted["shuffled_mean"] == pytest.approx(0.19, abs=0.03)  # 1 - (0.9)^2
    assert planted["p_value"] < 0.01
    chance = coupling(random_anchors, peaks, valid, lag=1, shuffles=500)
    assert abs(chance["rate"] - chance["shuffled_mean"]) < 4 * chance["shuffled_std"] + 0.05
    assert chance["p_value"] > 0.01
    # seeded: same inputs, same baseline
    assert coupling(anchors, peaks, valid, lag=1, shuffles=500)["shuffled_mean"] == planted["shuffled_mean"]


def test_entropy_lift_planted_and_null():
    rng = np.random.default_rng(1)
    entropies, peaks, flat_peaks = [], [], []
    for _ in range(10):
        values = rng.random(80) * 0.2
        peak = np.zeros(80, dtype=bool)
        peak[rng.choice(80, 20, replace=False)] = True
        values[peak] += 1.0
        values[-1] = np.nan  # dropped
        entropies.append(values)
        peaks.append(peak)
        flat_peaks.append(np.roll(peak, 7))
    lifted = entropy_lift(entropies, peaks, shuffles=300)
    assert lifted["mean_at_peaks"] > 2 * lifted["mean_all"]
    assert lifted["p_value"] < 0.01
    assert lifted["random_subset_mean"] == pytest.approx(lifted["mean_all"], rel=0.05)
    assert lifted["responses_with_higher_peak_entropy"] == 10
    assert lifted["tokens"] == 10 * 79
    shifted = entropy_lift(entropies, flat_peaks, shuffles=300)
    assert shifted["mean_at_peaks"] < lifted["mean_at_peaks"]


def test_jaccard_and_sign_test():
    assert jaccard([1, 2, 3], [2, 3, 4]) == 0.5
    assert jaccard([], []) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(5, 5) == 1.0
