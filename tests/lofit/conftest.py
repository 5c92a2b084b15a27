import pytest
import torch
from typer.testing import CliRunner

import workbench as wb
from workbench.cli import app


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return wb.load_model("tiny-gqa")


@pytest.fixture()
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    return invoke
