"""Bad pipeline files fail with one clear error before anything runs (nothing loaded, nothing written)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.pipeline import PipelineError, load_pipeline
from workbench.pipeline.registry import _STEPS, StepEntry, register_step

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
pipeline: p
model: tiny-gqa
data: {texts: ["one two three", "four five six"]}
steps:
  - {id: capture, step: capture, statistics: [sink_mass, entropy]}
  - {id: top, step: select, rule: {of: capture, by: sink_mass, top_k: 2}}
  - {id: check, step: validate, heads: top}
  - {id: report, step: report}
"""


def test_good_file_parses_with_defaults(write_yaml):
    spec = load_pipeline(write_yaml(GOOD))
    assert [c["id"] for c in spec.steps] == ["capture", "top", "check", "report"]
    assert spec.heads == "top" and spec.out == Path("results/p")
    assert spec.step("report")["include"] == ["capture", "top", "check"]


def test_shipped_pipelines_are_valid():
    for path in sorted((REPO / "pipelines").glob("*.yaml")):
        if path.name.startswith("sweep"):
            continue
        load_pipeline(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("steps:\n", "steps:\n  - {id: x, step: capture\n"), "not valid YAML at line 6"),
        (lambda t: t.replace("step: select", "step: selekt"), "unknown step 'selekt'; known steps: .*capture.*select"),
        (lambda t: t.replace("top_k: 2}", "top_k: 2}, colour: red"), r"unknown option\(s\) \['colour'\]"),
        (
            lambda t: t.replace("heads: top", "heads: later"),
            "reads step 'later', which is not an earlier step",
        ),
        (lambda t: t.replace("heads: top", "heads: capture"), "heads must name a select step"),
        (lambda t: t.replace("id: top", "id: capture"), "step id 'capture' is used twice"),
        (lambda t: t.replace("by: sink_mass", "by: sink_mas"), "step 'capture' has no column 'sink_mas'"),
        (lambda t: t.replace("top_k: 2", "top_k: -1"), "top_k must be an integer >= 1"),
        (lambda t: t.replace("model: tiny-gqa\n", ""), "needs 'model:'"),
        (lambda t: t.replace("data: {texts", "data: {source: nowhere.txt, x: 1, texts"), "unknown key"),
        (
            lambda t: t.replace(
                'data: {texts: ["one two three", "four five six"]}', "data: {source: no.txt}"
            ),
            "does not exist",
        ),
        (lambda t: t.replace("step: capture,", "step: capture, data: other,"), "uses data set 'other'"),
        (
            lambda t: t.replace("statistics: [sink_mass, entropy]", "statistics: [sinkiness]"),
            "unknown statistic",
        ),
        (lambda t: t + "outputs: {heads: capture}\n", "outputs.heads names 'capture'"),
        (lambda t: t + "extra: 1\n", r"unknown top-level key\(s\) \['extra'\]"),
        (lambda t: "- just\n- a list\n", "must be a YAML mapping"),
        (
            lambda t: t.replace(
                "{id: check, step: validate, heads: top}",
                "{id: check, step: validate, heads: top, intervention: {mode: explode}}",
            ),
            "intervention mode",
        ),
    ],
)
def test_bad_files_give_one_clear_error(write_yaml, edit, message):
    with pytest.raises(PipelineError, match=message):
        load_pipeline(write_yaml(edit(GOOD)))


def test_step_whose_analysis_is_missing_fails_at_validation(write_yaml):
    register_step(StepEntry("telepathy", "workbench.pipeline.steps.telepathy:Step", "a future analysis",
                            ("workbench.analyses.telepathy",)))  # fmt: skip
    try:
        text = GOOD.replace("  - {id: report", "  - {id: t, step: telepathy}\n  - {id: report")
        with pytest.raises(
            PipelineError, match="needs workbench.pipeline.steps.telepathy, workbench.analyses.telepathy"
        ):
            load_pipeline(write_yaml(text))
    finally:
        _STEPS.pop("telepathy")


def test_cli_reports_bad_file_in_one_line_and_writes_nothing(write_yaml, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "store"))
    path = write_yaml(GOOD.replace("step: select", "step: selekt"))
    result = CliRunner().invoke(app, ["pipeline", "run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown step 'selekt'")
    assert not (tmp_path / "store").exists() and not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["pipeline", "run", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_cli_check_and_steps(tiny_yaml):
    result = CliRunner().invoke(app, ["pipeline", "check", str(tiny_yaml)])
    assert result.exit_code == 0 and "ok (4 steps: capture, far, masking, report)" in result.output
    result = CliRunner().invoke(app, ["pipeline", "steps"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {"capture", "select", "validate", "report"} <= set(names)


def test_shipped_sweeps_are_valid():
    from workbench.pipeline.sweep import load_sweep

    for path in sorted((REPO / "pipelines").glob("sweep*.yaml")):
        spec = load_sweep(path)
        assert spec.jobs and spec.prompts
        assert spec.jobs[0].label == "baseline" and not spec.jobs[0].interventions


def test_a_sweep_file_given_to_pipeline_run_names_pipeline_sweep(tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    sweep = Path(__file__).resolve().parents[2] / "pipelines" / "sweep-masking.yaml"
    result = CliRunner().invoke(app, ["pipeline", "run", str(sweep), "--results", str(tmp_path / "results")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "workbench pipeline sweep" in lines[0] and "sweep file" in lines[0], result.output
    assert not (tmp_path / "results").exists()
