"""One front door per analysis: each analysis is one Step whose options dataclass holds its defaults; the
CLI parses into it and runs it through the pipeline runner, the only writer of runs; a sweep task runs the
same Step and records the same run."""

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from workbench.cli import app
from workbench.pipeline.options import OptionError, StepOptions, from_config
from workbench.pipeline.registry import known_steps, load_step

ROOT = Path(__file__).resolve().parents[2]
PLUMBING = {"select", "validate", "report"}  # pipeline steps over other steps' outputs

# command path -> (step name, {CLI parameter: options field} where the names differ)
COMMANDS = {
    ("heads", "sinks"): ("sinks", {}),
    ("heads", "retrieval"): ("retrieval", {}),
    ("eval", "niah"): ("niah-eval", {}),
    ("validate", "retrieval"): ("retrieval-validate", {}),
    ("heads", "streaming"): ("streaming", {}),
    ("influence",): ("influence", {}),
    ("calibrate", "act"): ("calibrate-act", {}),
    ("calibrate", "zerotuning"): ("calibrate-zerotuning", {}),
    ("eval", "task"): ("eval-task", {}),
    ("rhythm",): ("rhythm", {}),
    ("lofit", "select"): ("lofit", {"data": "file"}),
    ("lofit", "train"): ("lofit-train", {"data": "file"}),
    ("lofit", "eval"): ("lofit-eval", {"data": "file"}),
    ("lofit", "compare"): ("lofit-compare", {}),
    ("lofit", "fold"): ("lofit-fold", {}),
    ("binding",): ("binding", {}),
    ("capture",): ("capture-text", {"spec_json": "spec"}),
}


def _command(path):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def test_every_analysis_step_has_an_options_dataclass():
    analyses = [entry.name for entry in known_steps() if entry.name not in PLUMBING]
    assert {step for step, _ in COMMANDS.values()} <= set(analyses)
    for name in analyses:
        step = load_step(name)
        assert step.Options is not None and issubclass(step.Options, StepOptions), name
        assert dataclasses.is_dataclass(step.Options) and step.Options.__dataclass_params__.frozen, name
        assert step.record_kind, name
        fields = {f.name for f in dataclasses.fields(step.Options)} - {"model", "device", "dtype"}
        assert set(step.options) == fields, name  # a pipeline file's keys are the options' fields


@pytest.mark.parametrize("name", sorted(PLUMBING))
def test_every_plumbing_step_has_an_options_dataclass(name):
    """select, validate and report parse their keys into a frozen options dataclass too (defaults typed
    there once); they read other steps' outputs, so they run only in a pipeline (not as a sweep task)."""
    from workbench.exec import JobSpec
    from workbench.exec.tasks import step_task

    step = load_step(name)
    assert step.plumbing and step.Options is not None and issubclass(step.Options, StepOptions), name
    assert dataclasses.is_dataclass(step.Options) and step.Options.__dataclass_params__.frozen, name
    fields = {f.name for f in dataclasses.fields(step.Options)} - {"model", "device", "dtype"}
    assert set(step.options) == fields, name
    source = inspect.getsource(type(step))
    assert "option(config" not in source and "require(config" not in source, name  # no hand-typed checks
    with pytest.raises(ValueError, match="not an analysis Step"):
        step_task(None, JobSpec(task="step", model="m", params={"step": name}), "text", store=None)


def test_plumbing_options_parse_a_pipeline_config():
    from workbench.pipeline.steps.report import ReportOptions
    from workbench.pipeline.steps.validate import ValidateOptions

    options = from_config(ValidateOptions, {"heads": "top", "controls": 3}, where="step 'v'")
    assert (options.controls, options.seed, options.shard_size, options.metric) == (3, 0, 4, "logprob")
    assert options.intervention_spec() == {"mode": "uniform", "scope": "both"}
    with pytest.raises(OptionError, match="'controls' must be an integer"):
        from_config(ValidateOptions, {"heads": "top", "controls": True}, where="step 'v'")
    with pytest.raises(OptionError, match=r"needs option\(s\) \['heads'\]"):
        from_config(ValidateOptions, {}, where="step 'v'")
    assert from_config(ReportOptions, {"include": ["a"]}, where="step 'r'").include == ("a",)
    assert ReportOptions().file == "report.html" and ReportOptions().plotlyjs == "inline"


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_the_command_types_no_default_of_its_options(path):
    """An option left out on the command line is None, meaning the options' default: typed once, there."""
    step_name, renamed = COMMANDS[path]
    options = load_step(step_name).Options
    defaults = {f.name: f.default for f in dataclasses.fields(options)}
    matched = 0
    for param in _command(path).params:
        field = renamed.get(param.name, param.name)
        if field not in defaults or param.name == "model":
            continue
        matched += 1
        if field in ("device", "dtype"):
            assert param.default == defaults[field], (path, field)  # the shared names of workbench.devices
        else:
            assert param.default is None or param.required, (path, param.name, param.default)
    assert matched >= 3, path


def test_options_from_a_pipeline_config_are_type_checked_and_paths_resolve(tmp_path):
    from workbench.pipeline.steps.retrieval import RetrievalOptions

    options = from_config(RetrievalOptions, {"lengths": [300], "depths": [0, 50], "needles": "n.jsonl"},
                          where="step 'r'", base=tmp_path, model="tiny-gqa")
    assert options.lengths == (300,) and options.depths == (0.0, 50.0) and options.haystack == "synthetic"
    assert options.needles == tmp_path / "n.jsonl" and options.model == "tiny-gqa"
    assert options.threshold == RetrievalOptions().threshold
    with pytest.raises(OptionError, match="option 'lengths' must be a list of integers"):
        from_config(RetrievalOptions, {"lengths": ["long"]}, where="step 'r'")
    with pytest.raises(OptionError, match="'max_new_tokens' must be an integer"):
        from_config(RetrievalOptions, {"max_new_tokens": True}, where="step 'r'")


def test_no_analysis_imports_the_cli():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "workbench" / "analyses").rglob("*.py")
        if re.search(r"\bworkbench\.cli\b|from workbench import cli\b", path.read_text())
    ]
    assert offenders == []


def test_no_analysis_imports_a_layer_above_it():
    """Analyses sit below the pipeline, the executors and the CLI: no import of them, lazy ones included."""
    above = r"^\s*(from|import)\s+workbench\.(cli|pipeline|exec)\b|^\s*from workbench import (cli|pipeline|exec)\b"
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "workbench" / "analyses").rglob("*.py")
        if re.search(above, path.read_text(), flags=re.MULTILINE)
    ]
    assert offenders == []


def test_only_the_runner_writes_runs():
    """``put_run``/``save_capture`` are called only by workbench.pipeline.runner (and inside the store)."""
    callers = []
    for path in (ROOT / "workbench").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("workbench/store/") or relative == "workbench/pipeline/runner.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.put_run\(|\bsave_capture\(", line.split("#")[0]) and "def " not in line:
                callers.append(f"{relative}:{number}")
    assert callers == []
    runner = (ROOT / "workbench" / "pipeline" / "runner.py").read_text()
    assert runner.count(".put_run(") == 1  # write_run


def test_a_command_writes_exactly_one_run_through_the_runner(tmp_path, store, sample_text, put_runs):
    calls = put_runs
    text = tmp_path / "text.txt"
    text.write_text(sample_text)
    out = tmp_path / "SINKS.json"
    result = CliRunner().invoke(app, ["heads", "sinks", "tiny-gqa", "--text", str(text), "--window", "32",
                                      "--max-windows", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert calls == [("sinks", "workbench.pipeline.runner", "write_run")]
    assert len(store.runs()) == 1 and out.exists()


def test_bad_options_write_nothing_from_any_front_door(tmp_path, store, sample_text):
    from workbench.pipeline.runner import run_step
    from workbench.pipeline.steps.sinks import SinksOptions

    with pytest.raises(OptionError, match="--window must be at least 2"):
        run_step("sinks", SinksOptions(model="tiny-gqa", window=1), texts=[sample_text])
    assert not (tmp_path / "results").exists()


def test_a_sweep_task_and_the_command_record_the_same_run(tmp_path, store, sample_text):
    from workbench.exec import JobSpec, LocalExecutor, make_shards, run_jobs

    text = tmp_path / "text.txt"
    text.write_text(sample_text)
    args = ["heads", "sinks", "tiny-gqa", "--text", str(text), "--window", "32", "--max-windows", "2",
            "--eps", "0.25", "--out", str(tmp_path / "SINKS.json"), "--device", "cpu", "--dtype", "float32"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cli_run = result.output.strip().split("run ")[-1]
    job = JobSpec(task="step", model="tiny-gqa", dtype="float32",
                  params={"step": "sinks", "options": {"window": 32, "max_windows": 2, "eps": 0.25}})
    table = run_jobs(LocalExecutor(store, device="cpu", progress=False), [job], make_shards([sample_text], 1))
    assert table["run_id"].tolist() == [cli_run]
    assert table["kind"].tolist() == ["sinks"] and "sink_1" in table
    assert len(store.runs(kind="sinks")) == 1  # the sweep found the command's run: the same record


def test_executor_tasks_type_no_default_the_step_options_hold(monkeypatch):
    """The niah task's defaults (haystack, max_new_tokens) are NiahOptions' own; chat left out is the builder's."""
    import json

    import workbench.analyses.retrieval.haystack as haystack_module
    import workbench.analyses.retrieval.niah as niah_module
    from workbench.exec import JobSpec, tasks
    from workbench.pipeline.steps.retrieval import NiahOptions

    seen = {}

    class Builder:
        def __init__(self, model, hay, **kwargs):
            seen["chat"] = kwargs.get("chat")

        def build(self, needle, length, depth):
            return "built"

    class Runs:
        runs = {"tokens": [10], "success": [1.0], "rouge_recall": [1.0], "response": ["x"]}

    def run_prompts(model, built, *, max_new_tokens, **kwargs):
        seen["max_new_tokens"] = max_new_tokens
        return Runs()

    monkeypatch.setattr(haystack_module, "PromptBuilder", Builder)
    monkeypatch.setattr(haystack_module, "read_haystack", lambda name: seen.setdefault("haystack", name))
    monkeypatch.setattr(niah_module, "run_prompts", run_prompts)
    monkeypatch.setattr(tasks, "_BUILDERS", {})
    model = type("Model", (), {"name": "stub"})()
    prompt = json.dumps({"needle": "n", "question": "q", "answer": "a", "length": 300, "depth": 50})
    rows = tasks.niah_task(model, JobSpec(task="niah", model="stub"), prompt, store=None)
    assert rows["success"].tolist() == [1.0]
    assert seen == {"chat": None, "haystack": NiahOptions().haystack, "max_new_tokens": NiahOptions().max_new_tokens}
    assert not re.search(r"get\(\"(max_new_tokens|haystack|chat)\", (\d|\"|True|False)", inspect.getsource(tasks))


def test_the_capture_task_records_what_the_capture_step_records():
    """Both build a text's capture record through one function (pipeline.steps.capture.capture_ids)."""
    from workbench.exec import tasks
    from workbench.pipeline.steps import capture

    assert "capture_ids(" in inspect.getsource(tasks.capture_task)
    assert "capture_ids(" in inspect.getsource(capture.CaptureTextStep.execute)
    assert "capture_record" not in inspect.getsource(tasks)
