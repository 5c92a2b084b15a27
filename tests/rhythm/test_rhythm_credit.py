"""Credit weights and locally dominated anchors (spec §4 formulas) on hand-made token sets."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analyses.rhythm import (
    RhythmParams,
    credit_coupled,
    credit_global,
    credit_local,
    credit_weights,
    locally_dominated,
    top_fraction,
    waad_delta,
)


def _mask(n, positions):
    mask = np.zeros(n, dtype=bool)
    mask[list(positions)] = True
    return mask


def test_local_and_global_credit():
    preplan = _mask(6, [1, 4])
    assert credit_local(preplan).tolist() == [1, 1.5, 1, 1, 1.5, 1]
    assert credit_global(_mask(6, [0]), amplification=2.0).tolist() == [2, 1, 1, 1, 1, 1]


def test_coupled_credit_moves_alpha_of_a_dominated_anchor_to_its_intro():
    n = 10
    anchors = _mask(n, [3, 7])
    dominated = _mask(n, [7])
    intro = np.full(n, -1)
    intro[7] = 5
    gamma = credit_coupled(anchors, dominated, intro, alpha=0.3, amplification=1.5)
    expected = np.ones(n)
    expected[3] = 1.5  # anchor, not dominated: full bonus
    expected[7] = 1 + 0.5 * 0.7  # dominated: keeps 1 - alpha
    expected[5] = 1 + 0.5 * 0.3  # intro: gets alpha
    np.testing.assert_allclose(gamma, expected)
    # total bonus is conserved when the intro token is not itself credited
    assert gamma.sum() == pytest.approx(credit_global(anchors).sum())


def test_coupled_credit_edge_cases():
    n = 8
    anchors = _mask(n, [2, 4, 5])
    dominated = _mask(n, [4, 5])
    intro = np.full(n, -1)
    intro[4] = intro[5] = 2  # both dominated anchors open at token 2, itself an anchor
    gamma = credit_coupled(anchors, dominated, intro, alpha=0.5)
    assert gamma[2] == pytest.approx(1 + 0.5 * (1 + 0.5))  # indicator: credited once as intro
    assert gamma[4] == gamma[5] == pytest.approx(1.25)
    # alpha = 0 is the global scheme; a dominated flag on a non-anchor is ignored
    np.testing.assert_allclose(credit_coupled(anchors, dominated, intro, alpha=0.0), credit_global(anchors))
    assert credit_coupled(_mask(n, []), _mask(n, [3]), intro).tolist() == [1.0] * n


def test_waad_delta_and_top_fraction():
    assert np.allclose(waad_delta(np.array([1.0, 3.0, 2.0]))[:2], [2.0, 1.0])
    assert np.isnan(waad_delta(np.array([1.0, 3.0, 2.0]))[-1])
    values = np.array([5.0, np.nan, 1.0, 4.0, 3.0, 2.0])
    assert top_fraction(values, 0.4).tolist() == [True, False, False, True, False, False]  # ceil(0.4 * 5) = 2
    assert not top_fraction(np.array([np.nan, np.nan]), 0.5).any()


def test_locally_dominated_anchors_follow_a_waad_jump():
    waad = np.array([1.0, 1.0, 1.0, 9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 8.0, 1.2, 1.0])
    anchors = _mask(waad.size, [3, 4, 8])
    dominated, intro = locally_dominated(waad, anchors, tau_waad=2.0, tau_delta=5.0, lookback=3)
    # 4: low WAAD just after the jump at 3 -> dominated, intro = the peak 3
    # 3: the peak itself has high WAAD -> not dominated; 8: no jump in [5, 7] -> not dominated
    assert np.flatnonzero(dominated).tolist() == [4]
    assert intro[4] == 3 and intro[3] == -1 and intro[8] == -1
    # a shorter lookback misses a jump further back
    dominated, _ = locally_dominated(waad, _mask(waad.size, [6]), tau_waad=2.0, tau_delta=5.0, lookback=2)
    assert not dominated.any()
    dominated, intro = locally_dominated(waad, _mask(waad.size, [6]), tau_waad=2.0, tau_delta=5.0, lookback=3)
    assert dominated[6] and intro[6] == 3


def test_credit_weights_defaults_and_params():
    rng = np.random.default_rng(0)
    waad = rng.random(50) * 10
    fai = rng.random(50)
    fai[-5:] = np.nan
    result = credit_weights(waad, fai)
    assert result["is_preplan"].sum() == np.ceil(0.4 * 49)
    assert result["is_anchor"].sum() == np.ceil(0.4 * 45)
    assert not result["is_anchor"][-5:].any()
    assert set(np.unique(result["credit_global"])) == {1.0, 1.5}
    dominated = result["is_dominated"]
    assert np.all(result["is_anchor"][dominated])
    assert np.all(result["intro_position"][dominated] < np.flatnonzero(dominated))
    off = credit_weights(waad, fai, RhythmParams(alpha=0.0))
    np.testing.assert_allclose(off["credit_coupled"], off["credit_global"])


@pytest.mark.parametrize(
    "kwargs", [{"alpha": 1.5}, {"preplan_fraction": 0.0}, {"anchor_fraction": 1.2}, {"lookback": 0}]
)
def test_params_reject_bad_values(kwargs):
    with pytest.raises(ValueError):
        RhythmParams(**kwargs)
