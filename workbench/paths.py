"""Where the workbench keeps converted weights (cache) and results (store)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$WORKBENCH_HOME``, default ``~/.cache/workbench``: converted checkpoints live here."""
    return Path(os.environ.get("WORKBENCH_HOME", Path.home() / ".cache" / "workbench")).expanduser()


def results_dir() -> Path:
    """``$WORKBENCH_RESULTS``, default ``./results``: the store (DuckDB + Parquet)."""
    return Path(os.environ.get("WORKBENCH_RESULTS", "results")).expanduser()


def hub_online() -> bool:
    """``$WORKBENCH_ONLINE=1`` (or ``workbench --online``) lets Hugging Face ids download from the hub.
    Default: offline, local files only (the HF cache or a local folder), so no run waits on the network."""
    return os.environ.get("WORKBENCH_ONLINE", "").strip().lower() not in ("", "0", "false", "no")
