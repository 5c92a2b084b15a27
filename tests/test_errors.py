"""Bad input gets one clear error and nothing is written (CLI and Python API)."""

import json

import pytest
from typer.testing import CliRunner

import workbench as wb
from workbench.cli import app

runner = CliRunner()


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("A small text for the capture command. It has a few sentences in it.")
    return path


def invoke(args, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    return runner.invoke(app, args)


def assert_nothing_written(tmp_path, out):
    assert not out.exists()
    assert not (tmp_path / "results" / "runs").exists() or not any((tmp_path / "results" / "runs").iterdir())


def test_unknown_model_lists_known_names(tmp_path, monkeypatch, text_file):
    out = tmp_path / "t.parquet"
    result = invoke(
        ["capture", "no-such-model", "--text", str(text_file), "--out", str(out)], tmp_path, monkeypatch
    )
    assert result.exit_code == 2
    assert (
        "unknown model" in result.output and "smollm2-135m" in result.output and "tiny-gqa" in result.output
    )
    assert "Traceback" not in result.output
    assert_nothing_written(tmp_path, out)


def test_text_longer_than_window_names_both_numbers(tmp_path, monkeypatch):
    long_text = tmp_path / "long.txt"
    long_text.write_text("x" * 2100)  # byte tokenizer: 2100 tokens > 2048 window
    out = tmp_path / "t.parquet"
    result = invoke(
        ["capture", "tiny-gqa", "--text", str(long_text), "--out", str(out)], tmp_path, monkeypatch
    )
    assert result.exit_code == 2
    assert "2100" in result.output and "2048" in result.output
    assert_nothing_written(tmp_path, out)


@pytest.mark.parametrize(
    "flag,value,words",
    [("--heads", "0,7", ["head 7", "4 query heads"]), ("--layers", "5", ["layer 5", "2 layers"])],
)
def test_head_or_layer_out_of_range_names_the_shape(tmp_path, monkeypatch, text_file, flag, value, words):
    out = tmp_path / "t.parquet"
    result = invoke(
        ["capture", "tiny-gqa", "--text", str(text_file), "--out", str(out), flag, value],
        tmp_path,
        monkeypatch,
    )
    assert result.exit_code == 2
    for word in words:
        assert word in result.output
    assert_nothing_written(tmp_path, out)


def test_empty_text(tmp_path, monkeypatch):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    out = tmp_path / "t.parquet"
    result = invoke(["capture", "tiny-gqa", "--text", str(empty), "--out", str(out)], tmp_path, monkeypatch)
    assert result.exit_code == 2 and "empty" in result.output
    assert_nothing_written(tmp_path, out)


@pytest.mark.parametrize(
    "spec,word",
    [
        ('{"statistics": ["entropy", "nonsense"]}', "unknown statistic"),
        ('{"statistics": ["entropy"], "colour": 3}', "unknown capture-spec field"),
        ("{not json", "not valid JSON"),
        ('{"statistics": ["span_mass"]}', "span"),
        ('{"pooled_cells": 999}', "pooled_cells"),
    ],
)
def test_malformed_capture_spec(tmp_path, monkeypatch, text_file, spec, word):
    out = tmp_path / "t.parquet"
    result = invoke(
        ["capture", "tiny-gqa", "--text", str(text_file), "--out", str(out), "--spec", spec],
        tmp_path,
        monkeypatch,
    )
    assert result.exit_code == 2, result.output
    assert word in result.output
    assert_nothing_written(tmp_path, out)


def test_python_api_errors(tiny):
    with pytest.raises(wb.SpecError, match="head 9 is out of range"):
        tiny.capture("hello there", wb.CaptureSpec(heads=(9,)))
    with pytest.raises(wb.SpecError, match="layers"):
        tiny.logits("hello", [wb.HeadGate(3, 0, gate=0.0)])
    with pytest.raises(wb.InputError, match="empty"):
        tiny.capture("")
    with pytest.raises(wb.SpecError, match="unknown intervention kind"):
        wb.interventions_from_json(json.dumps([{"kind": "teleport", "layer": 0, "head": 0}]))
    with pytest.raises(ValueError, match="unknown model"):
        wb.load_model("gpt-17")


def test_capture_command_writes_table_and_records_run(tmp_path, monkeypatch, text_file):
    out = tmp_path / "table.parquet"
    result = invoke(
        ["capture", "tiny-gqa", "--text", str(text_file), "--out", str(out)], tmp_path, monkeypatch
    )
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_parquet(out)
    assert {"layer", "head", "sink_mass", "entropy", "mean_distance", "waad", "max"} <= set(table.columns)
    assert len(table) == 2 * 4
    again = invoke(
        ["capture", "tiny-gqa", "--text", str(text_file), "--out", str(out)], tmp_path, monkeypatch
    )
    assert again.exit_code == 0
    runs = invoke(["runs", "--json"], tmp_path, monkeypatch)
    assert len(json.loads(runs.output)) == 1  # the same run twice is recorded once
