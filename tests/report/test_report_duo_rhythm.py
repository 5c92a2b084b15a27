"""The DuoAttention and rhythm report modules: no data -> no finding; a results file -> tables, findings
with the verdict rules of their modules."""

from __future__ import annotations

import json

import pytest

from workbench.report import duo, rhythm


def test_no_committed_data_gives_no_finding(tmp_path):
    assert duo.findings(tmp_path) == [] and rhythm.findings(tmp_path) == []
    assert "No committed results yet" in duo.deployment_table(tmp_path)
    assert "No committed results yet" in rhythm.tests_table(tmp_path)


def _runs(successes):
    return [
        {"needle": f"n{i // 4}", "length": 600, "depth": 10.0 * (i % 4), "success": s}
        for i, s in enumerate(successes)
    ]


def test_duo_gate_top_vs_random_is_paired_per_prompt(tmp_path):
    run = tmp_path / "duo" / "gpu-test"
    run.mkdir(parents=True)
    n = 40
    conditions = [
        {
            "condition": "full",
            "ratio": 1.0,
            "seed": None,
            "success_rate": 0.8,
            "runs": _runs([True] * 32 + [False] * 8),
        },
        {
            "condition": "gate-top",
            "ratio": 0.5,
            "seed": None,
            "success_rate": 0.75,
            "runs": _runs([True] * 30 + [False] * 10),
        },
        {
            "condition": "random",
            "ratio": 0.5,
            "seed": 0,
            "success_rate": 0.25,
            "runs": _runs([True] * 10 + [False] * 30),
        },
        {"condition": "random", "ratio": 0.5, "seed": 1, "success_rate": 0.0, "runs": _runs([False] * n)},
    ]
    (run / "results.json").write_text(
        json.dumps(
            {
                "device": "test",
                "finished": True,
                "train": None,
                "protocol": {"model": "m"},
                "conditions": conditions,
            }
        )
    )
    (found,) = duo.findings(tmp_path)
    assert found["value"] == pytest.approx(0.75 - 0.125) and found["n"] == n
    assert found["verdict"] == "reproduced" and found["ci"][0] > 0
    table = duo.deployment_table(tmp_path)
    assert "| gate-top | 50% | - | 40 | 0.750 [" in table and "per seed 0.000-0.250" in table
    assert "gate optimisation did not finish" in duo.training_table(tmp_path)
    assert "partial" not in found["metric"]
    # gates cut by the call's time: the finding says so
    result = json.loads((run / "results.json").read_text())
    result["train"] = {"params": {"stopped": "time", "steps_done": 198, "schedule_steps": 647}}
    (run / "results.json").write_text(json.dumps(result))
    (found,) = duo.findings(tmp_path)
    assert found["metric"].endswith("partial run: gates stopped by time at step 198 of 647")


def test_rhythm_verdicts():
    assert rhythm.verdict({"ci": [0.01, 0.2], "p_value": 0.01}) == "reproduced"
    assert rhythm.verdict({"ci": [0.01, 0.2], "p_value": 0.2}) == "inconclusive"  # the control must agree
    assert rhythm.verdict({"ci": [-0.2, 0.0], "p_value": 0.9}) == "not reproduced"
    assert rhythm.verdict({"ci": [-0.1, 0.1], "p_value": 0.5}) == "inconclusive"


def test_checks_against_shuffled_controls():
    import numpy as np

    from workbench.analyses.rhythm.checks import group_consistency, perturbation_check

    same = [np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)] * 20
    result = group_consistency(same, shuffles=200)
    assert result["observed"] == 1.0 and result["p_value"] < 0.01 and result["ci"][0] > 0.5
    rng = np.random.default_rng(0)
    random_sets = [rng.permutation(np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)) for _ in range(20)]
    assert group_consistency(random_sets, shuffles=200)["p_value"] > 0.05
    moved = [{"jaccard_low": 0.7, "jaccard_high": 0.4}] * 30
    assert perturbation_check(moved)["p_value"] < 0.001
    tied = [{"jaccard_low": 0.5 + d, "jaccard_high": 0.5} for d in (0.1, -0.1) * 15]
    assert perturbation_check(tied)["p_value"] > 0.3
