"""The one run record: what a Step returns and what the pipeline runner writes to the store.

A ``StepOutput`` holds head tables, arrays (DataFrames), a JSON summary and artifacts (objects the front
door writes as files, such as a SINKS.json report; never stored). When a Step runs on its own (the CLI, a
notebook) its record also carries its store identity: ``kind`` (``sinks``, ``retrieval-heads``, ...),
``input_hash``, ``spec`` and ``params``; inside a pipeline the runner names it by the step's content key.
Only ``workbench.pipeline.runner`` turns a record into a store run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class StepOutput:
    head_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    arrays: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)  # written by the front door, not stored
    # the store identity of a stand-alone run (the pipeline runner uses the step's content key instead)
    kind: str | None = None
    input_hash: str | None = None
    spec: dict | None = None
    params: dict | None = None
    backend: str | None = None  # the attention backend to record, when it is not the model's (a capture's)

    def table(self, name: str = "heads") -> pd.DataFrame:
        if name in self.head_tables:
            return self.head_tables[name]
        if name in self.arrays:
            return self.arrays[name]
        raise KeyError(f"no table {name!r}; this step has {sorted(self.head_tables) + sorted(self.arrays)}")


RunRecord = StepOutput  # the same thing, by the name the store uses


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` atomically (a reader never sees half a file); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.parquet")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
