"""The results docs are generated from committed raw files, and cannot drift from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workbench import report
from workbench.report import lofit as lofit_report
from workbench.report.markers import MarkerError, fill_tables
from workbench.report.stats import bootstrap_ci, paired_test

ROOT = Path(__file__).resolve().parents[2] / "docs" / "results"
REPO = ROOT.parents[1]


def test_committed_docs_match_what_their_data_renders():
    stale = report.stale(ROOT)
    assert not stale, f"run `python -m workbench.report docs`; stale: {[str(p) for p in stale]}"


def test_every_finding_has_the_fields_and_a_committed_source():
    entries = json.loads((ROOT / "findings.json").read_text())
    assert entries, "findings.json is empty"
    for entry in entries:
        assert set(report.FIELDS) <= set(entry), entry
        assert entry["verdict"] in report.VERDICTS
        low, high = entry["ci"]
        assert low <= entry["value"] <= high, entry
        assert entry["n"] >= 1
        source = REPO / entry["source"]
        assert source.is_file(), f"{entry['finding']}: source {entry['source']} is not committed"
        assert source.resolve().is_relative_to((ROOT / "data").resolve())


def test_readme_opens_with_the_findings_table():
    text = (ROOT / "README.md").read_text()
    assert text.index("<!-- table:findings -->") < text.index("## Raw files")
    for entry in json.loads((ROOT / "findings.json").read_text()):
        assert entry["finding"] in text


def test_a_hand_edited_number_is_caught(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(ROOT, copy)
    doc = copy / "4-retrieval.md"
    text = doc.read_text()
    assert "| top-10 retrieval heads | 0.000 / **0.578**" in text
    doc.write_text(
        text.replace(
            "| top-10 retrieval heads | 0.000 / **0.578**", "| top-10 retrieval heads | 0.000 / **0.600**"
        )
    )
    assert report.stale(copy) == [doc]
    report.write(copy)
    assert doc.read_text() == text


def test_a_finding_whose_data_changes_is_caught(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(ROOT, copy)
    masks = copy / "data/retrieval/gpu-2026-12-02/masks-uniform.json"
    data = json.loads(masks.read_text())
    for run in data["runs"]:
        if run["condition"] == "top-10":
            run["success"] = True
    masks.write_text(json.dumps(data))
    assert copy / "findings.json" in report.stale(copy)


def test_markers_replace_only_the_marked_block():
    text = "prose 1\n<!-- table:a -->\nold\n<!-- /table -->\nprose `<!-- table:NAME -->` 2\n"
    assert fill_tables(text, lambda name: f"new {name}") == (
        "prose 1\n<!-- table:a -->\nnew a\n<!-- /table -->\nprose `<!-- table:NAME -->` 2\n"
    )
    with pytest.raises(MarkerError, match="unbalanced"):
        fill_tables("<!-- table:a -->\nno end\n", lambda name: "")


def test_bootstrap_and_paired_test_behave():
    low, high = bootstrap_ci([0.0] * 50 + [1.0] * 50)
    assert 0.38 < low < 0.5 < high < 0.62
    assert bootstrap_ci([0.3] * 10) == pytest.approx((0.3, 0.3))
    assert paired_test([1.0] * 40, [0.0] * 40) < 0.001
    assert paired_test([1.0, 0.0] * 20, [0.0, 1.0] * 20) == 1.0


def _unit(condition, k, seed, fold, ids, mc1, mc2):
    return {
        "task": "truthfulqa",
        "condition": condition,
        "k": k,
        "seed": seed,
        "fold": fold,
        "params": 64 * k,
        "items": {"id": ids, "mc1": mc1, "mc2": mc2},
    }


def test_lofit_table_and_findings_from_a_results_file(tmp_path):
    run = tmp_path / "lofit" / "gpu-test"
    run.mkdir(parents=True)
    ids = list(range(40))
    units = [_unit("base", 0, None, 0, ids, [0.0] * 40, [0.3] * 40)]
    for seed in (0, 1):
        units.append(_unit("lofit", 8, seed, 0, ids, [1.0] * 30 + [0.0] * 10, [0.6] * 40))
        units.append(_unit("random", 8, seed, 0, ids, [0.0] * 40, [0.4] * 40))
    (run / "results.json").write_text(json.dumps({"device": "test", "finished": True, "units": units}))
    table = lofit_report.table(tmp_path, "truthfulqa")
    assert "| LoFiT heads | 8 | 512 | 2 | 40 | 0.750 [" in table
    assert "| random heads | 8 | 512 | 2 | 40 | 0.000 [0.000, 0.000] | 0.400 [0.400, 0.400] |" in table
    assert "+0.200 (p = 0.000)" in table  # MC2, paired against random heads
    found = {e["metric"].split("(")[0]: e for e in lofit_report.findings(tmp_path)}
    assert found["mc2"]["value"] == pytest.approx(0.2) and found["mc2"]["verdict"] == "reproduced"
    assert found["mc1"]["n"] == 40


def test_all_heads_units_from_before_the_lr_fix_are_left_out(tmp_path):
    run = tmp_path / "lofit" / "gpu-test"
    run.mkdir(parents=True)
    ids = list(range(40))
    units = [_unit("base", 0, None, 0, ids, [0.0] * 40, [0.3] * 40)]
    units.append(_unit("random", 8, 0, 0, ids, [0.0] * 40, [0.4] * 40))
    units.append(_unit("all", 8, 0, 0, ids, [0.0] * 40, [0.3] * 40))  # diverged: no lr_scale recorded
    units.append({**_unit("all", 8, 1, 0, ids, [0.0] * 40, [0.5] * 40), "lr_scale": 0.17})
    (run / "results.json").write_text(json.dumps({"device": "test", "finished": True, "units": units}))
    table = lofit_report.table(tmp_path, "truthfulqa")
    assert "| all heads, same budget | 8 | 512 | 1 | 40 | 0.000 [0.000, 0.000] | 0.500 [0.500, 0.500] |" in table
    assert "Left out: 1 all-heads units trained before the learning-rate fix" in table


def test_lofit_findings_compare_with_all_heads_too(tmp_path):
    run = tmp_path / "lofit" / "gpu-test"
    run.mkdir(parents=True)
    ids = list(range(40))
    units = []
    for seed in (0, 1):
        units.append(_unit("lofit", 8, seed, 0, ids, [1.0] * 40, [0.6] * 40))
        units.append(_unit("random", 8, seed, 0, ids, [1.0] * 40, [0.6] * 40))
    # all heads worse on MC2 for seed 0 only; seed 1 of the all-heads control is missing
    units.append({**_unit("all", 8, 0, 0, ids, [1.0] * 40, [0.5] * 40), "lr_scale": 0.17})
    (run / "results.json").write_text(json.dumps({"device": "test", "finished": True, "units": units}))
    found = lofit_report.findings(tmp_path)
    versus_all = [e for e in found if "all heads" in e["finding"]]
    assert {e["finding"] for e in versus_all} == {
        "LoFiT-selected heads beat all heads with the same parameter budget (K = 8, truthfulqa mc1)",
        "LoFiT-selected heads beat all heads with the same parameter budget (K = 8, truthfulqa mc2)",
    }
    mc2 = next(e for e in versus_all if e["finding"].endswith("mc2)"))
    assert mc2["value"] == pytest.approx(0.1) and mc2["verdict"] == "reproduced"
    assert "2 and 1 seeds" in mc2["metric"]
    mc1 = next(e for e in versus_all if e["finding"].endswith("mc1)"))
    assert mc1["value"] == 0 and mc1["verdict"] == "not reproduced"  # a CI of [0, 0] does not exclude 0 from above
    random = [e for e in found if "random heads" in e["finding"]]
    assert len(random) == 2 and all(e["verdict"] == "not reproduced" for e in random)


def test_rendered_tables_carry_the_raw_numbers():
    """Spot checks against the raw files, read here independently of the renderers."""
    import pandas as pd

    data = ROOT / "data"
    binding_doc = (ROOT / "8-binding.md").read_text()
    for folder in sorted((data / "binding").glob("tiny-vit-*")):
        best = json.loads((folder / "summary.json").read_text())["best_layer"]
        probes = pd.read_parquet(folder / "probes.parquet")
        row = probes[(probes.layer == best) & (probes.probe == "quadratic")].iloc[0]
        assert f"{row.same_class_accuracy:.3f} / {row.same_class_auroc:.3f}" in binding_doc
    retrieval_doc = (ROOT / "4-retrieval.md").read_text()
    for path in sorted((data / "influence").glob("*/SCORES.parquet")):
        scores = pd.read_parquet(path)
        for domain, rows in scores.groupby("domain"):
            line = (f"| {domain} | {len(rows)} | {int(rows.tokens.median())} | {rows.loss_base.mean():.3f} "
                    f"| {rows.influence.mean():.3f} |")
            assert line in retrieval_doc, line
    sinks = json.loads((data / "sinks" / "SINKS.json").read_text())
    assert f"**{100 * sinks['sink_1']:.1f}**" in (ROOT / "5-sinks-calibration.md").read_text()


def _binding_folder(tmp_path, quadratic_right: float, baseline_right: float, scenes: int = 40) -> Path:
    """A `workbench binding dinov2-s14` folder with per-scene counts: 10 same-class pairs per scene."""
    import pandas as pd

    folder = tmp_path / "binding" / "dinov2-s14-n8"
    folder.mkdir(parents=True)
    rows = []
    for scene in range(scenes):
        for probe, share in (("quadratic", quadratic_right), ("lowrank", 1.0), ("diagonal", baseline_right),
                             ("random-init:quadratic", baseline_right - 0.1)):  # fmt: skip
            # the rate varies by scene (clustered), around its mean
            right = int(round(10 * min(1.0, max(0.0, share + (0.1 if scene % 2 else -0.1)))))
            rows.append({"layer": 3, "probe": probe, "scene": scene, "n_same_class": 10, "correct_same_class": right})
        rows.append({"layer": -1, "probe": "pixels:quadratic", "scene": scene, "n_same_class": 10, "correct_same_class": 5})
    pd.DataFrame(rows).to_parquet(folder / "scenes.parquet")
    (folder / "summary.json").write_text(json.dumps({"best_layer": 3, "config": {"scenes": 8}}))
    return tmp_path


@pytest.mark.parametrize(("quadratic", "baseline", "verdict"),
                         [(0.8, 0.6, "reproduced"), (0.6, 0.6, "inconclusive"), (0.4, 0.7, "not reproduced")])  # fmt: skip
def test_binding_finding_compares_the_quadratic_probe_with_its_best_baseline(tmp_path, quadratic, baseline, verdict):
    from workbench.report import binding

    (entry,) = binding.findings(_binding_folder(tmp_path, quadratic, baseline))
    assert entry["verdict"] == verdict and entry["n"] == 40
    assert abs(entry["value"] - (quadratic - baseline)) < 1e-9  # the best baseline: diagonal, not lowrank
    assert "diagonal" in entry["metric"] and entry["ci"][0] <= entry["value"] <= entry["ci"][1]
    assert entry["source"].endswith("dinov2-s14-n8/scenes.parquet")


def test_the_gpu_e2e_report_in_benchmarks_results_is_the_committed_one():
    """Issue 16 names benchmarks/results/gpu_e2e.json; the docs render docs/results/data/gpu/gpu_e2e.json."""
    named = json.loads((REPO / "benchmarks" / "results" / "gpu_e2e.json").read_text())
    rendered = json.loads((ROOT / "data" / "gpu" / "gpu_e2e.json").read_text())
    assert named == rendered, "copy docs/results/data/gpu/gpu_e2e.json to benchmarks/results/gpu_e2e.json"
