"""The random-K control drawn both ways (issue 17 item 6): the report on synthetic raw files, and the
per-run draw on a tiny model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.report import retrieval
from workbench.report.stats import bootstrap_ci_two_level

RUNS = [("needle a", 600, d) for d in (10, 20, 30, 40)] + [("needle b", 900, d) for d in (10, 20, 30, 40)]


def _run(key, success, **fields):
    return {"needle": key[0], "length": key[1], "depth": key[2], "success": bool(success), **fields}


def _write(tmp_path, fresh_success):
    """8 runs; no mask succeeds everywhere; top-10 nowhere; fixed sets (outside top 50) fail on 6 of 8 runs
    (drop 0.75); fresh draws as given."""
    folder = tmp_path / "retrieval" / "gpu-test"
    folder.mkdir(parents=True)
    runs = [_run(k, 1, condition="none", k=0, seed=None, exclude_top=None) for k in RUNS]
    runs += [_run(k, 0, condition="top-10", k=10, seed=None, exclude_top=None) for k in RUNS]
    for seed in (0, 1):
        runs += [
            _run(k, int(i % 4 == 0), condition="random-10", k=10, seed=seed, exclude_top=50)
            for i, k in enumerate(RUNS)
        ]
    (folder / "random-fixed.json").write_text(
        json.dumps({"runs": runs, "lengths": [600, 900], "depths": [10, 20, 30, 40], "mode": "uniform"})
    )
    for draw, successes in enumerate(fresh_success):
        part = [
            _run(k, s, condition="fresh-random-10", draw=draw, run=i)
            for i, (k, s) in enumerate(zip(RUNS, successes, strict=True))
        ]
        (folder / f"random-fresh-d{draw}.json").write_text(json.dumps({"runs": part}))
    return tmp_path


def test_both_draws_are_reported_with_their_intervals(tmp_path):
    data = _write(tmp_path, [[1] * 8, [1] * 7 + [0]])  # fresh: one failure in 16 masked runs
    table = retrieval.random_draws_table(data)
    assert "| no mask | - | 8 | 1.000 | - | - |" in table
    assert "| top-10 retrieval heads | - | 8 | 0.000 | 1.000 [1.000, 1.000] | - |" in table
    assert "| one fixed set per seed, outside the top 50 (project) | 2 seeds | 8 | 0.250 | 0.750 [" in table
    assert (
        "| a fresh set per run, outside the top 100 (reference repository) | 2 per run | 8 | 0.938 | 0.062 ["
        in table
    )
    found = {e["finding"]: e for e in retrieval.random_draw_findings(data)}
    fixed = next(e for name, e in found.items() if "fixed set" in name)
    fresh = next(e for name, e in found.items() if "fresh set" in name)
    assert fixed["value"] == 0.75 and fixed["verdict"] == "not reproduced" and fixed["n"] == 8
    assert fresh["value"] == pytest.approx(0.0625) and fresh["n"] == 8
    assert fresh["verdict"] == ("reproduced" if fresh["ci"][1] < 0.15 else "inconclusive")
    assert fresh["source"].endswith("gpu-test/random-fresh-d0.json")


def test_no_folder_no_findings(tmp_path):
    assert retrieval.random_draw_findings(tmp_path) == []
    assert "No committed results yet" in retrieval.random_draws_table(tmp_path)


def test_two_level_interval_widens_with_the_spread_between_draws():
    same = [[0.2] * 50, [0.2] * 50]
    assert bootstrap_ci_two_level(same) == pytest.approx((0.2, 0.2))
    apart = [[0.0] * 50, [0.4] * 50]  # two draws that disagree: the interval covers both
    low, high = bootstrap_ci_two_level(apart)
    assert low == pytest.approx(0.0) and high == pytest.approx(0.4)


def test_fresh_draws_differ_per_run_and_avoid_the_top(tiny):
    from workbench.analyses.retrieval.haystack import Needle
    from workbench.analyses.retrieval.masking import fresh_random_runs

    heads = pd.DataFrame(
        [
            {"layer": layer, "head": head, "score": float(8 - 4 * layer - head)}
            for layer in range(2)
            for head in range(4)
        ]
    )
    needles = [Needle("The code is blue 42.", "What is the code?", "blue 42")]
    runs = fresh_random_runs(
        tiny,
        heads,
        "synthetic",
        needles,
        lengths=(160,),
        depths=(10, 50, 90),
        k=2,
        draws=(0, 1),
        exclude_top=3,
        max_new_tokens=3,
        progress=False,
    )
    assert len(runs) == 6 and sorted(set(runs.draw)) == [0, 1]
    sets = runs.heads.tolist()
    assert len(set(sets)) > 1  # not one set for the whole grid
    for heads_text in sets:
        chosen = {tuple(map(int, h.split("."))) for h in heads_text.split(";")}
        assert len(chosen) == 2 and not chosen & {(0, 0), (0, 1), (0, 2)}  # the top 3 by score
