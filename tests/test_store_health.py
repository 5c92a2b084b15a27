"""A corrupt or locked store is one clear error before any model work; --results picks the store;
HF ids stay offline unless asked; internal shard runs stay out of listings; every registered name is listed."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.store import Store

runner = CliRunner()
TINY_YAML = Path(__file__).parent / "pipeline" / "tiny.yaml"


@pytest.fixture()
def corrupt(tmp_path):
    folder = tmp_path / "bad-store"
    folder.mkdir()
    (folder / "workbench.duckdb").write_bytes(os.urandom(40_000))
    return folder


@pytest.fixture()
def no_model(monkeypatch):
    """Any model load fails the test: the store must be checked first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the store was checked")

    monkeypatch.setattr("workbench.models.registry.resolve", refuse)
    monkeypatch.setattr("workbench.runners.hf.load_model", refuse)


def commands(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("A short text for the capture command, with a few words in it.")
    return {
        "runs": ["runs"],
        "capture": ["capture", "tiny-gqa", "--text", str(text), "--out", str(tmp_path / "out" / "t.parquet")],
        "pipeline run": ["pipeline", "run", str(TINY_YAML), "--out", str(tmp_path / "out")],
    }


@pytest.mark.parametrize("command", ["runs", "capture", "pipeline run"])
def test_corrupt_store_is_one_line_exit_2_before_any_model_work(
    command, tmp_path, corrupt, no_model, monkeypatch
):
    monkeypatch.delenv("WORKBENCH_RESULTS", raising=False)
    before = corrupt.joinpath("workbench.duckdb").read_bytes()
    started = time.perf_counter()
    result = runner.invoke(app, [*commands(tmp_path)[command], "--results", str(corrupt)])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 2, result.output
    assert elapsed < 10, elapsed
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "not a readable DuckDB database" in lines[0] and "move it away" in lines[0]
    assert str(corrupt / "workbench.duckdb") in lines[0]
    assert not (tmp_path / "out").exists()  # nothing written: no table, no pipeline folder
    assert not (corrupt / "runs").exists()
    assert corrupt.joinpath("workbench.duckdb").read_bytes() == before


def test_corrupt_store_is_not_retried_as_a_lock(corrupt):
    store = Store(corrupt)
    store.lock_wait_s = 30.0
    started = time.perf_counter()
    with pytest.raises(Exception, match="not a readable DuckDB database"):
        store.runs()
    assert time.perf_counter() - started < 2


HOLDER = """
import sys, time
from workbench.store import Store
con = Store(sys.argv[1])._connect()  # a write connection, as a running pipeline holds
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path.parent), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_locked_store_is_retried_then_reported_as_locked(tmp_path, monkeypatch):
    folder = tmp_path / "busy"
    folder.mkdir()
    monkeypatch.setattr(Store, "lock_wait_s", 1.0)
    holder = hold_lock(folder / "workbench.duckdb", 60)
    try:
        started = time.perf_counter()
        result = runner.invoke(app, ["runs", "--results", str(folder)])
        elapsed = time.perf_counter() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2, result.output
    assert 1.0 <= elapsed < 10, elapsed  # it waited for the lock, briefly
    assert "locked by another process" in result.output and "not a readable" not in result.output
    assert "Traceback" not in result.output


def test_a_lock_released_while_waiting_is_not_an_error(tmp_path, monkeypatch):
    folder = tmp_path / "busy"
    folder.mkdir()
    monkeypatch.setattr(Store, "lock_wait_s", 20.0)
    holder = hold_lock(folder / "workbench.duckdb", 1.0)
    try:
        result = runner.invoke(app, ["runs", "--results", str(folder)])
    finally:
        holder.wait()
    assert result.exit_code == 0, result.output
    assert "no runs in" in result.output


def test_results_option_picks_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "elsewhere"))
    chosen = Store(tmp_path / "chosen")
    chosen.put_run("capture", "tiny-gqa", "abc", params={"n": 1})
    result = runner.invoke(app, ["runs", "--results", str(tmp_path / "chosen")])
    assert result.exit_code == 0, result.output
    assert "capture" in result.output and "tiny-gqa" in result.output
    assert os.environ["WORKBENCH_RESULTS"] == str(tmp_path / "elsewhere")  # restored after the command


def test_shard_runs_are_hidden_unless_all(tmp_path):
    store = Store(tmp_path / "results")
    store.put_run("capture", "tiny-gqa", "a")
    store.put_run("shard", "tiny-gqa", "b", arrays={"result": pd.DataFrame({"x": [1]})})
    kinds = lambda output: [line.split()[1] for line in output.splitlines() if line.strip()]  # noqa: E731
    shown = runner.invoke(app, ["runs", "--results", str(store.root)])
    assert shown.exit_code == 0 and kinds(shown.output) == ["capture"], shown.output
    everything = runner.invoke(app, ["runs", "--all", "--results", str(store.root)])
    assert sorted(kinds(everything.output)) == ["capture", "shard"], everything.output
    assert list(store.runs(internal=False)["kind"]) == ["capture"]


def test_uncached_hub_id_fails_at_once_naming_the_switch(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_ONLINE", raising=False)
    text = tmp_path / "text.txt"
    text.write_text("some words to capture")
    started = time.perf_counter()
    result = runner.invoke(
        app,
        [
            "capture",
            "workbench-tests/no-such-model-here",
            "--text",
            str(text),
            "--out",
            str(tmp_path / "t.parquet"),
            "--results",
            str(tmp_path / "results"),
        ],
    )
    elapsed = time.perf_counter() - started
    assert result.exit_code == 2, result.output
    assert elapsed < 5, elapsed
    assert "--online" in result.output and "WORKBENCH_ONLINE=1" in result.output
    assert not (tmp_path / "t.parquet").exists()


def test_online_switch_has_one_home(monkeypatch):
    from workbench import paths
    from workbench.models.registry import hub_kwargs

    monkeypatch.delenv("WORKBENCH_ONLINE", raising=False)
    assert hub_kwargs() == {"local_files_only": True}
    monkeypatch.setenv("WORKBENCH_ONLINE", "1")
    assert paths.hub_online() and hub_kwargs() == {"local_files_only": False}


def test_models_lists_dinov2_without_importing_vision_code():
    code = (
        "import sys; from typer.testing import CliRunner; from workbench.cli import app; "
        "out = CliRunner().invoke(app, ['models']).output; "
        "assert 'dinov2-s14' in out, out; "
        "assert not [m for m in sys.modules if m.startswith(('workbench.vision', 'torch'))]; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_a_damaged_store_is_reported_without_importing_torch(corrupt):
    """The one-line error costs no torch/transformers import (seconds on a loaded machine)."""
    code = (
        "import sys; from typer.testing import CliRunner; from workbench.cli import app; "
        f"result = CliRunner().invoke(app, ['runs', '--results', {str(corrupt)!r}]); "
        "assert result.exit_code == 2, result.output; "
        "assert 'not a readable DuckDB database' in result.output; "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
