"""Where the GPU jobs' committed results live, and what a doc table says while there are none."""

from __future__ import annotations

from pathlib import Path


def result_files(data: Path, topic: str) -> list[Path]:
    """Every committed ``data/<topic>/<run>/results.json``, oldest run name first."""
    return sorted((data / topic).glob("*/results.json"))


def no_results(command: str, topic: str) -> str:
    """The table text before any run of ``command`` is committed under ``docs/results/data/<topic>/``."""
    return (
        f"No committed results yet: run `{command}` on the GPU and commit its output folder under "
        f"`docs/results/data/{topic}/`.\n"
    )
