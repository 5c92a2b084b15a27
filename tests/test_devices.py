"""--device/--dtype: on every model-loading command, resolved in one place, recorded in the store; a device
that is not there is one line, exit 2, nothing written."""

import inspect
import json
import sys

import duckdb
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from workbench.cli import app
from workbench.devices import DeviceError, check_names, resolve_device, resolve_dtype, resolve_runtime

runner = CliRunner()
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")

# every command that loads a model (issue 16); the introspection test below also finds ones added later
MODEL_COMMANDS = [
    "capture", "demo", "heads retrieval", "heads streaming", "heads sinks", "eval niah", "eval task",
    "validate retrieval", "influence", "calibrate act", "calibrate zerotuning", "rhythm", "lofit select",
    "lofit train", "lofit eval", "lofit fold", "lofit compare", "binding", "pipeline run", "pipeline sweep",
]


def leaf_commands():
    """{'heads sinks': click command, ...} for the whole CLI."""
    root = typer.main.get_command(app)
    found = {}

    def walk(group, prefix):
        for name, command in group.commands.items():
            path = f"{prefix} {name}".strip()
            if hasattr(command, "commands"):
                walk(command, path)
            else:
                found[path] = command

    walk(root, "")
    return found


def test_every_model_loading_command_has_device_and_dtype():
    commands = leaf_commands()
    for path in MODEL_COMMANDS:
        options = {opt for param in commands[path].params for opt in getattr(param, "opts", [])}
        assert {"--device", "--dtype"} <= options, f"`workbench {path}` lacks --device/--dtype"
    # any command whose body loads a model must take the flags too (catches a new command that forgets them)
    loaders = ("load(model", "load_vision_model(", "run_pipeline(", "run_sweep(", "load_model(")
    for path, command in commands.items():
        source = inspect.getsource(inspect.unwrap(command.callback))
        if any(loader in source for loader in loaders):
            options = {opt for param in command.params for opt in getattr(param, "opts", [])}
            assert "--device" in options, f"`workbench {path}` loads a model but has no --device"


def test_the_help_text_is_defined_once():
    commands = leaf_commands()
    helps = {param.help for path in MODEL_COMMANDS for param in commands[path].params if param.name == "device"}
    assert len(helps) == 1


def test_resolution_rules():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert resolve_runtime("cpu", "float16").to_dict() == {"device": "cpu", "dtype": "float16"}
    for bad in ("tpu", "cuda:x", "gpu"):
        with pytest.raises(DeviceError, match="unknown device"):
            resolve_device(bad)
    with pytest.raises(DeviceError, match="unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))
    check_names("cuda:3", "bfloat16")  # syntax only: a file may be checked where the GPU is not
    with pytest.raises(DeviceError):
        check_names("cuda:3", "half")


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:7"])
def test_missing_cuda_is_a_device_error(device):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device(device)


def invoke(args, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    return runner.invoke(app, args)


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("A small text for the capture command. It has a few sentences in it, and some more words.")
    return path


def _unavailable_cases(tmp_path, text_file):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "model: tiny-gqa\ndata: {corpus: {source: sample}}\nsteps:\n  - {id: capture, step: capture, data: corpus}\n"
    )
    return [
        (["capture", "tiny-gqa", "--text", str(text_file), "--out", str(tmp_path / "o.parquet")], tmp_path / "o.parquet"),
        (["heads", "sinks", "tiny-gqa", "--text", str(text_file), "--out", str(tmp_path / "s.json")], tmp_path / "s.json"),
        (["eval", "niah", "tiny-gqa", "--out", str(tmp_path / "n.json")], tmp_path / "n.json"),
        (["eval", "task", "tiny-gqa", "--limit", "2", "--out", str(tmp_path / "e.json")], tmp_path / "e.json"),
        (["lofit", "eval", "tiny-gqa", "--task", "clutrr", "--out", str(tmp_path / "l.json")], tmp_path / "l.json"),
        (["rhythm", "tiny-gqa", "--out", str(tmp_path / "r")], tmp_path / "r"),
        (["binding", "tiny-vit-supervised-s0", "--out", str(tmp_path / "b")], tmp_path / "b"),
        (["pipeline", "run", str(pipeline), "--out", str(tmp_path / "p")], tmp_path / "p"),
        (["demo", "--model", "tiny-gqa", "--out", str(tmp_path / "d")], tmp_path / "d"),
    ]


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:7"])
def test_unavailable_device_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, text_file, device):
    for args, out in _unavailable_cases(tmp_path, text_file):
        result = invoke(args + ["--device", device], tmp_path, monkeypatch)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "CUDA" in lines[0], result.output
        assert not out.exists(), args
        assert not (tmp_path / "results").exists(), args  # the store is not even created


def test_bad_names_are_one_line_exit_2(tmp_path, monkeypatch, text_file):
    out = tmp_path / "o.parquet"
    for flags in (["--device", "tpu"], ["--dtype", "float8"]):
        result = invoke(["capture", "tiny-gqa", "--text", str(text_file), "--out", str(out), *flags], tmp_path, monkeypatch)
        assert result.exit_code == 2 and result.output.count("\n") == 1 and "error:" in result.output
        assert not out.exists() and not (tmp_path / "results").exists()


def test_bfloat16_capture_on_cpu_is_recorded(tmp_path, monkeypatch, text_file):
    out = tmp_path / "o.parquet"
    args = ["capture", "tiny-gqa", "--text", str(text_file), "--out", str(out), "--device", "cpu", "--dtype", "bfloat16"]
    result = invoke(args, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert out.exists()
    listed = json.loads(invoke(["runs", "--json"], tmp_path, monkeypatch).output)
    assert [(r["kind"], r["device"], r["dtype"], r["backend"]) for r in listed] == [("capture", "cpu", "bfloat16", "pytorch")]
    run_json = json.loads((tmp_path / "results" / "runs" / listed[0]["run_id"] / "run.json").read_text())
    assert (run_json["device"], run_json["dtype"], run_json["backend"]) == ("cpu", "bfloat16", "pytorch")
    text = invoke(["runs"], tmp_path, monkeypatch).output
    assert "bfloat16" in text and "pytorch" in text
    # the same capture in float32 is another run (its numbers differ), not read back as the bfloat16 one
    assert invoke(args[:-1] + ["float32"], tmp_path, monkeypatch).exit_code == 0
    listed = json.loads(invoke(["runs", "--json"], tmp_path, monkeypatch).output)
    assert sorted(r["dtype"] for r in listed) == ["bfloat16", "float32"]


def test_older_store_without_device_columns_stays_readable(tmp_path, monkeypatch):
    from workbench.store import Store

    root = tmp_path / "results"
    root.mkdir()
    con = duckdb.connect(str(root / "workbench.duckdb"))
    con.execute(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, kind TEXT, model TEXT, input_hash TEXT, spec TEXT, params TEXT, "
        "created TIMESTAMP, path TEXT)"
    )
    con.execute("INSERT INTO runs VALUES ('old1', 'capture', 'm', 'h', '{}', '{}', now(), '/nowhere')")
    con.close()
    store = Store(root)
    table = store.runs()
    assert table.loc[0, "run_id"] == "old1" and table.loc[0, "device"] is None
    assert " - " in invoke(["runs"], tmp_path, monkeypatch).output
    store.put_run("capture", "m", "h2", runtime={"device": "cpu", "dtype": "float32", "backend": "sdpa"})
    table = store.runs().set_index("run_id")
    assert pd.isna(table.loc["old1", "device"]) and set(table["backend"].dropna()) == {"sdpa"}


def test_pipeline_keys_parse_and_bad_values_are_one_error(tmp_path, monkeypatch):
    from workbench.pipeline import parse_pipeline
    from workbench.pipeline.errors import PipelineError

    base = {"model": "tiny-gqa", "data": {"corpus": {"source": "sample"}},
            "steps": [{"id": "capture", "step": "capture", "data": "corpus"}]}
    spec = parse_pipeline({**base, "device": "cuda:1", "dtype": "bfloat16"})
    assert (spec.device, spec.dtype) == ("cuda:1", "bfloat16")
    spec = parse_pipeline({**base, "device": "auto", "dtype": "auto"})
    assert (spec.device, spec.dtype) == (None, None)
    for key, value in (("device", "tpu"), ("dtype", "half"), ("device", 3)):
        with pytest.raises(PipelineError, match=key):
            parse_pipeline({**base, key: value})
    path = tmp_path / "bad.yaml"
    path.write_text("model: tiny-gqa\ndevice: gpu0\ndata: {corpus: {source: sample}}\nsteps: [{id: c, step: capture, data: corpus}]\n")
    result = invoke(["pipeline", "check", str(path)], tmp_path, monkeypatch)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "gpu0" in result.output


def test_pipeline_runs_on_the_requested_dtype_and_records_it(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text(
        "model: tiny-gqa\ndevice: cpu\ndtype: bfloat16\ndata: {corpus: {texts: ['one short text for the tiny model']}}\n"
        "steps:\n  - {id: capture, step: capture, data: corpus}\n"
    )
    result = invoke(["pipeline", "run", str(path), "--out", str(tmp_path / "out")], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    listed = json.loads(invoke(["runs", "--json"], tmp_path, monkeypatch).output)
    assert {r["kind"] for r in listed} >= {"pipeline-step", "pipeline"}
    assert {(r["device"], r["dtype"]) for r in listed} == {("cpu", "bfloat16")}, listed
    step = next(r for r in listed if r["kind"] == "pipeline-step")
    assert step["backend"] == "pytorch"


def test_local_executor_uses_the_requested_device_and_dtype():
    from workbench.exec import JobSpec, LocalExecutor, make_shards, run_jobs

    executor = LocalExecutor(device="cpu", progress=False)
    assert executor.device == torch.device("cpu")
    model = executor.model("tiny-gqa", "bfloat16")
    assert model.device.type == "cpu" and model.dtype == torch.bfloat16
    table = run_jobs(executor, [JobSpec(task="logprob", model="tiny-gqa", dtype="bfloat16")], make_shards(["a b c d e"], 1))
    assert len(table) and table.select_dtypes("number").notna().all().all()
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            LocalExecutor(device="cuda")
    with pytest.raises(DeviceError):
        JobSpec(task="logprob", model="tiny-gqa", dtype="half").validate()


def test_the_e2e_driver_covers_every_required_command(monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "e2e.py"
    spec = importlib.util.spec_from_file_location("e2e_driver", path)
    e2e = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "e2e_driver", e2e)  # dataclasses look their module up
    spec.loader.exec_module(e2e)
    names = {c.name for c in e2e.COMMANDS}
    required = {"capture", "heads retrieval", "eval niah", "validate retrieval", "heads streaming", "influence",
                "heads sinks", "calibrate act", "calibrate zerotuning", "eval task", "rhythm", "lofit select",
                "lofit train", "lofit eval", "binding", "pipeline run"}
    assert required <= names
    commands = leaf_commands()
    for command in e2e.COMMANDS:
        assert command.compare in e2e.COMPARE, command.name
        assert set(command.needs) <= names
        args = [str(a) for a in command.args(Path("/tmp/x") / e2e.slug(command.name))]
        path_words = " ".join(args[:2]) if " ".join(args[:2]) in commands else args[0]
        assert path_words == command.name  # the entry runs the command it is named after
