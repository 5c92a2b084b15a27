"""Where the workbench keeps converted weights (cache) and results (store)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_MARKERS = ("pyproject.toml", ".git")


def home() -> Path:
    """``$WORKBENCH_HOME``, default ``~/.cache/workbench``: converted checkpoints live here."""
    return Path(os.environ.get("WORKBENCH_HOME", Path.home() / ".cache" / "workbench")).expanduser()


def package_data(*parts: str) -> Path:
    """A file or folder under ``workbench/data/`` of the installed package (wheel or checkout): the bundled
    texts, tasks, pipelines and tiny-ViT checkpoints. Nothing of the package looks outside itself."""
    return Path(__file__).resolve().parent.joinpath("data", *parts)


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working folder) that holds a
    ``pyproject.toml`` or ``.git``, or None outside any project."""
    folder = Path(start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return None


def results_dir() -> Path:
    """The store (DuckDB + Parquet): ``$WORKBENCH_RESULTS`` when set; else ``results/`` of the project the
    working folder is in (see ``project_root``), so that a notebook in ``notebooks/``, the CLI and the app
    started anywhere in the repository share one store; else ``./results``."""
    if os.environ.get("WORKBENCH_RESULTS"):
        return Path(os.environ["WORKBENCH_RESULTS"]).expanduser()
    root = project_root()
    return root / "results" if root is not None else Path("results")


def hub_online() -> bool:
    """``$WORKBENCH_ONLINE=1`` (or ``workbench --online``) lets Hugging Face ids download from the hub.
    Default: offline, local files only (the HF cache or a local folder), so no run waits on the network."""
    return os.environ.get("WORKBENCH_ONLINE", "").strip().lower() not in ("", "0", "false", "no")
