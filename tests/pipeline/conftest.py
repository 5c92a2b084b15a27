from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture()
def tiny_yaml() -> Path:
    return HERE / "tiny.yaml"


@pytest.fixture()
def write_yaml(tmp_path):
    """Write a pipeline file from text; returns its path."""

    def write(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
