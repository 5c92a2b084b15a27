"""What benchmarks/calibration_gpu.py adds (folds, random-head controls, the driver end to end on tiny-gqa)
and the report that reads its results (workbench/report/calibration.py)."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from workbench.report import calibration as report

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "benchmarks"))
import calibration_gpu  # noqa: E402


def test_random_groups_keep_sizes_and_settings_and_avoid_the_selection():
    pool = [(layer, head) for layer in range(6) for head in range(4)]
    groups = [(2.0, [(0, 1), (1, 1), (2, 1)]), (0.5, [(3, 0), (4, 0)])]
    drawn = calibration_gpu.random_groups(groups, pool, seed=0)
    assert [(g, len(h)) for g, h in drawn] == [(2.0, 3), (0.5, 2)]
    heads = [h for _, hs in drawn for h in hs]
    assert len(set(heads)) == 5 and not set(heads) & {h for _, hs in groups for h in hs}
    assert drawn == calibration_gpu.random_groups(groups, pool, seed=0)
    assert drawn != calibration_gpu.random_groups(groups, pool, seed=1)
    with pytest.raises(RuntimeError, match="cannot draw"):
        calibration_gpu.random_groups([(None, pool[:20])], pool, seed=0)


def test_folds_hold_every_item_out_once():
    args = SimpleNamespace(data=DATA, limit=None, clutrr_tune=300)
    folds = calibration_gpu.splits(args, "sentiment")
    tests = [{i.id for i in f["test"].items} for f in folds]
    tunes = [{i.id for i in f["tune"].items} for f in folds]
    assert len(tests[0] | tests[1]) == 200 and not tests[0] & tests[1]
    assert tunes[0] == tests[1] and tunes[1] == tests[0]
    if not (DATA / "truthfulqa" / "train.csv").exists():
        pytest.skip("the shared TruthfulQA / CLUTRR data is not on this machine")
    folds = calibration_gpu.splits(args, "truthfulqa")
    assert [len(f["tune"]) for f in folds] == [204, 204] and [len(f["test"]) for f in folds] == [204, 204]
    (clutrr,) = calibration_gpu.splits(args, "clutrr")
    assert len(clutrr["tune"]) == 300 and len(clutrr["test"]) == 450


def _unit(task, fold, method, condition, correct, seed=None):
    ids = [f"{task}-{fold}-{k}" for k in range(len(correct))]
    return {
        "task": task,
        "fold": fold,
        "method": method,
        "condition": condition,
        "seed": seed,
        "model": "m",
        "n_tune": 10,
        "n_test": len(correct),
        "n_heads": 0 if condition == "base" else 9,
        "accuracy": sum(correct) / len(correct),
        "items": {"id": ids, "correct": correct},
    }


def _synthetic(tmp_path, finished=True):
    """ACT: selected fixes 30 of 100 base errors per fold (clear gain), random equals base, all breaks items.
    ZeroTuning: selected equals base exactly (no gain)."""
    base = [1] * 40 + [0] * 60
    better = [1] * 70 + [0] * 30
    worse = [1] * 20 + [0] * 80
    units = []
    for fold in (0, 1):
        units += [
            _unit("truthfulqa", fold, "act", "base", base),
            _unit("truthfulqa", fold, "act", "selected", better),
            _unit("truthfulqa", fold, "act", "all", worse),
        ]
        units += [_unit("truthfulqa", fold, "act", "random", base, seed=s) for s in (0, 1)]
        units += [_unit("truthfulqa", fold, "zerotuning", c, base) for c in ("base", "selected", "all")]
        units += [_unit("truthfulqa", fold, "zerotuning", "random", base, seed=s) for s in (0, 1)]
    searches = [
        {
            "task": "truthfulqa",
            "fold": f,
            "method": m,
            "selected": [[None if m == "act" else 2.0, [[3, 1], [4, 2]]]],
            "tune_baseline": 0.4,
            "tune_selected": 0.5,
        }
        for f in (0, 1)
        for m in ("act", "zerotuning")
    ]
    folder = tmp_path / "calibration" / "run"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps({"device": "test", "finished": finished, "units": units, "searches": searches})
    )
    return tmp_path


def test_report_pools_folds_pairs_items_and_applies_the_verdict_rule(tmp_path):
    data = _synthetic(tmp_path)
    entries = {e["finding"]: e for e in report.findings(data)}
    act_base = entries["ACT on the tuned heads raises held-out accuracy over the base model (TruthfulQA MC1)"]
    assert act_base["value"] == pytest.approx(0.3) and act_base["n"] == 200 and act_base["ci"][0] > 0
    assert act_base["verdict"] == "reproduced"
    assert (
        entries["ACT on the tuned heads beats as many random heads (TruthfulQA MC1)"]["verdict"]
        == "reproduced"
    )
    act_all = entries["ACT on the tuned heads beats ACT on all heads of layers 2..L-2 (TruthfulQA MC1)"]
    assert act_all["value"] == pytest.approx(0.5) and act_all["verdict"] == "reproduced"
    zt = entries[
        "ZeroTuning on the tuned heads raises held-out accuracy over the base model (TruthfulQA MC1)"
    ]
    assert zt["value"] == 0 and zt["ci"] == [0, 0] and zt["verdict"] == "not reproduced"
    assert not any("ZeroTuning" in name and "all heads" in name for name in entries)  # ACT's claim only
    table = report.table(data)
    assert (
        "| TruthfulQA MC1 | ACT | 10 | 200 | fold 0: 2, tune 0.400 -> 0.500; fold 1: 2, tune 0.400 -> 0.500 |"
        in table
    )
    assert "+0.300 [" in table and "(2) |" in table and "complete" in table


def test_verdict_rule():
    assert report.verdict((0.001, 0.2)) == "reproduced"
    assert report.verdict((-0.05, 0.009)) == "not reproduced"
    assert report.verdict((-0.05, 0.02)) == "inconclusive"


def test_report_without_data_emits_nothing(tmp_path):
    assert report.findings(tmp_path) == []
    assert "No committed results yet" in report.table(tmp_path)
    data = _synthetic(tmp_path, finished=False)
    assert "partial" in report.table(data)
    assert all("partial run" in e["metric"] for e in report.findings(data))


def test_driver_smoke_writes_the_layout_the_report_reads(tmp_path, run_driver):
    out = tmp_path / "calibration" / "smoke"
    smoke = ("--smoke", "--tasks", "sentiment", "--limit", "4")
    run_driver("calibration_gpu.py", *smoke, "--out", out)
    result = json.loads((out / "results.json").read_text())
    assert result["finished"] and result["jobs_done"] == result["jobs_expected"] == 4
    for unit in result["units"]:
        assert len(unit["items"]["id"]) == len(unit["items"]["correct"]) == unit["n_test"] == 4
    jobs = {(u["fold"], u["method"]) for u in result["units"]}
    assert jobs == {(f, m) for f in (0, 1) for m in ("act", "zerotuning")}
    for fold, method in jobs:
        conditions = [u["condition"] for u in result["units"] if (u["fold"], u["method"]) == (fold, method)]
        assert conditions[0] == "base" and conditions[1] == "selected" and conditions[-1] == "all"
        selected = next(s for s in result["searches"] if (s["fold"], s["method"]) == (fold, method))[
            "selected"
        ]
        assert conditions.count("random") == (1 if selected else 0)
    assert {len(s["profile"]) for s in result["searches"] if s["method"] == "zerotuning"} == {
        4
    }  # tiny-gqa: 4 head indices
    assert {e["n"] for e in report.findings(tmp_path)} == {8}
    run_driver("calibration_gpu.py", *smoke, "--merge", "--out", out)
    assert json.loads((out / "results.json").read_text())["units"] == result["units"]
