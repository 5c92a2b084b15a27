"""benchmarks/duo_gpu.py end to end (--smoke: tiny-gqa, the synthetic haystack, a few steps): the no-gate
conditions dealt over several control workers are each run once, and the merge reads every worker's units."""

import json


def test_control_workers_share_the_conditions_once_each(tmp_path, run_driver):
    out = tmp_path / "duo"
    run_driver("duo_gpu.py", "--smoke", "--control-workers", "3", "--out", out)
    assert sorted(p.stem for p in (out / "units").glob("*.json")) == [
        "controls",
        "controls-1",
        "controls-2",
        "train",
    ]
    result = json.loads((out / "results.json").read_text())
    keys = [(c["condition"], c["ratio"], c["seed"]) for c in result["conditions"]]
    assert len(keys) == len(set(keys)) == result["conditions_expected"]
    ratios = {c["ratio"] for c in result["conditions"] if c["condition"] == "random"}
    seeds = {c["seed"] for c in result["conditions"] if c["condition"] == "random"}
    expected = {("full", 1.0, None), ("all-streaming", 0.0, None)}
    expected |= {("random", r, s) for r in ratios for s in seeds} | {("gate-top", r, None) for r in ratios}
    assert set(keys) == expected and len(seeds) >= 2
    assert result["finished"] and result["train"] is not None
    # each control worker ran its own share: none of them holds another's condition
    shares = [
        {
            (c["condition"], c["ratio"], c["seed"])
            for c in json.loads((out / "units" / f"{n}.json").read_text())["conditions"]
        }
        for n in ("controls", "controls-1", "controls-2")
    ]
    assert all(shares) and sum(map(len, shares)) == len(set().union(*shares))
