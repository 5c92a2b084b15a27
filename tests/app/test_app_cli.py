"""`workbench app`: serves app/main.py on 127.0.0.1 by default, over the store it is given."""

from __future__ import annotations

import os

from conftest import MAIN
from typer.testing import CliRunner

from workbench.cli import app


def capture_exec(monkeypatch) -> dict:
    seen = {}

    def fake_execve(path, args, env):
        seen.update(path=path, args=args, env=env)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", fake_execve)
    return seen


def test_app_serves_main_on_loopback(monkeypatch, tmp_path):
    seen = capture_exec(monkeypatch)
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "store"))
    result = CliRunner().invoke(app, ["app", "--port", "8765"])
    assert result.exit_code == 0, result.output
    args = seen["args"]
    assert args[1:4] == ["-m", "streamlit", "run"] and args[4] == str(MAIN)
    assert args[args.index("--server.address") + 1] == "127.0.0.1"
    assert args[args.index("--server.port") + 1] == "8765"
    assert args[args.index("--server.headless") + 1] == "true"
    assert seen["env"]["WORKBENCH_RESULTS"] == str((tmp_path / "store").resolve())
    assert "make demo" in result.output  # the store is empty


def test_app_host_and_results_options(monkeypatch, tmp_path):
    seen = capture_exec(monkeypatch)
    result = CliRunner().invoke(app, ["app", "--host", "0.0.0.0", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen["args"][seen["args"].index("--server.address") + 1] == "0.0.0.0"
    assert seen["env"]["WORKBENCH_RESULTS"] == str(tmp_path.resolve())


def test_app_rejects_a_bad_port(monkeypatch):
    seen = capture_exec(monkeypatch)
    result = CliRunner().invoke(app, ["app", "--port", "0"])
    assert result.exit_code == 2 and not seen
