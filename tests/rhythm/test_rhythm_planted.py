"""Planted attention patterns go through the seam's statistics and come back as the planted tokens."""

from __future__ import annotations

import numpy as np
import pytest
from rhythm_planted import planted_maps, reference_rhythm, seam_statistics

from workbench.analyses.rhythm import RhythmParams, credit_weights, preplan_tokens, top_fraction
from workbench.analyses.rhythm.detect import anchor_tokens, group_rhythm


@pytest.fixture(scope="module")
def planted():
    maps, info = planted_maps()
    return maps, info, seam_statistics(maps)


def _grouped(stats, info, fai_window=(10, 100)):
    return group_rhythm(
        stats["mean_distance"], stats["waad"], stats["fai"], info["prompt"], fai_window=fai_window
    )


def test_head_groups_recover_planted_local_and_global_heads(planted):
    maps, info, stats = planted
    grouped = _grouped(stats, info)
    flat_local = np.flatnonzero(grouped["local"].ravel())
    flat_global = np.flatnonzero(grouped["global"].ravel())
    assert set(flat_local) == {0, 1, 2}
    assert set(flat_global) == {3, 4, 5}
    reference = reference_rhythm(maps, grouped["local"], grouped["global"], info["prompt"])
    np.testing.assert_allclose(grouped["distance"], reference["distance"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("window", [(10, 100), (3, 20), (0, 5)])
def test_group_statistics_equal_spec_formulas_on_averaged_maps(window):
    maps, info = planted_maps(seed=1)
    stats = seam_statistics(maps, fai_window=window)
    grouped = _grouped(stats, info, fai_window=window)
    reference = reference_rhythm(maps, grouped["local"], grouped["global"], info["prompt"], fai_window=window)
    np.testing.assert_allclose(grouped["waad"], reference["waad"], rtol=1e-4, atol=1e-5)
    assert np.array_equal(np.isnan(grouped["fai"]), np.isnan(reference["fai"]))
    finite = np.isfinite(reference["fai"])
    np.testing.assert_allclose(grouped["fai"][finite], reference["fai"][finite], rtol=1e-4, atol=1e-6)
    # the last H_lo response tokens have no later query in the window: FAI undefined
    assert np.isnan(grouped["fai"][-1]) == (window[0] > 0)


def test_sawtooth_recovers_planted_preplan_tokens(planted):
    _, info, stats = planted
    waad = _grouped(stats, info)["waad"]
    onsets = np.array(info["onsets"])
    assert np.all(waad[onsets] > 5) and np.median(waad) < 1.5  # the sawtooth: spikes at chunk onsets
    expected = set(onsets) | set(onsets - 1)  # |WAAD_t - WAAD_t+1| jumps into and out of each spike
    exact = preplan_tokens(waad, len(expected) / (len(waad) - 1))
    assert set(np.flatnonzero(exact)) == expected
    assert expected <= set(np.flatnonzero(preplan_tokens(waad, 0.4)))


def test_attended_tokens_recover_planted_anchors(planted):
    _, info, stats = planted
    fai = _grouped(stats, info)["fai"]
    anchors = set(info["anchors"])
    defined = int(np.isfinite(fai).sum())
    assert set(np.flatnonzero(anchor_tokens(fai, len(anchors) / defined))) == anchors
    assert anchors <= set(np.flatnonzero(anchor_tokens(fai, 0.4)))
    assert np.nanargmax(fai) in anchors


def test_shuffled_pattern_loses_the_planted_tokens(planted):
    """Control: the same statistics on a map without the plant do not single out those tokens."""
    maps, info = planted_maps(onsets=(), anchors=())
    stats = seam_statistics(maps)
    grouped = _grouped(stats, info)
    exact = top_fraction(grouped["fai"], 2 / np.isfinite(grouped["fai"]).sum())
    assert set(np.flatnonzero(exact)) != set(planted[1]["anchors"])
    assert grouped["waad"].max() < 2.5


def test_credit_weights_on_planted_rhythm(planted):
    _, info, stats = planted
    grouped = _grouped(stats, info)
    credit = credit_weights(grouped["waad"], grouped["fai"], RhythmParams())
    for anchor in info["anchors"]:
        assert credit["credit_global"][anchor] == 1.5
    for onset in info["onsets"]:
        assert credit["credit_local"][onset] == 1.5
    assert set(np.unique(credit["credit_local"])) <= {1.0, 1.5}
    coupled = credit["credit_coupled"]
    assert coupled.min() >= 1.0 and coupled.max() <= 1.5 * 1.5
