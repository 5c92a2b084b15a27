"""What every pipeline step is: a config checked before anything runs, named inputs, one output.

A step's output is a few DataFrames and a JSON summary; the runner records it in the store under a
content hash of (step kind, version, config, model, data, inputs' hashes), so a finished step is read
back instead of re-run. ``materialize`` writes a step's files into the output folder (on every run, from
the recorded output), and ``figures`` gives the plotly figures for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from workbench.pipeline.errors import PipelineError


@dataclass
class StepOutput:
    head_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    arrays: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def table(self, name: str = "heads") -> pd.DataFrame:
        if name in self.head_tables:
            return self.head_tables[name]
        if name in self.arrays:
            return self.arrays[name]
        raise KeyError(f"no table {name!r}; this step has {sorted(self.head_tables) + sorted(self.arrays)}")


@dataclass
class Context:
    """What a running step may use: the pipeline, its store and executor, its output folder."""

    pipeline: Any  # PipelineSpec
    store: Any  # Store
    executor: Any  # Executor
    out: Path
    echo: Callable[[str], None] = print
    run_ids: dict[str, str] = field(default_factory=dict)  # step id -> store run id, filled as steps finish
    step_key: str | None = None  # the running step's content key (its options, model, data and inputs)

    def work_file(self, config: dict, suffix: str) -> Path:
        """Where the running step keeps its partial work: ``.work/<id>-<key><suffix>`` in the output
        folder. Named by the step's key, so a changed option starts afresh; the runner removes the step's
        work files once the step is recorded."""
        return self.out / ".work" / f"{config['id']}-{self.step_key}{suffix}"

    def units(self, config: dict):
        """The running step's log of finished units (``workbench.checkpoint.UnitLog``): a rerun after a
        kill continues inside the step."""
        from workbench.checkpoint import UnitLog

        return UnitLog(self.work_file(config, ".jsonl"))

    def training_checkpoint(self, config: dict):
        """The running step's training state (``workbench.checkpoint.TrainingCheckpoint``)."""
        from workbench.checkpoint import TrainingCheckpoint

        return TrainingCheckpoint(self.work_file(config, ".safetensors"))

    def texts(self, name: str) -> list[str]:
        from workbench.pipeline.data import load_texts

        return load_texts(self.pipeline.data[name])

    def model(self):
        """The pipeline's model, loaded once (shared with a local executor)."""
        loader = getattr(self.executor, "model", None)
        if loader is None:  # a remote executor: load a driver-side copy only when a step needs one
            from workbench.exec.base import load_job_model

            if not hasattr(self, "_model"):
                self._model = load_job_model(self.pipeline.model, self.pipeline.dtype, self.pipeline.device)
            return self._model
        return loader(self.pipeline.model, self.pipeline.dtype)


class Step:
    """Base class: subclasses set ``kind``, ``options`` (allowed config keys with help) and implement run."""

    kind: ClassVar[str] = "step"
    version: ClassVar[int] = 1
    options: ClassVar[dict[str, str]] = {}
    uses_data: ClassVar[bool] = False

    def check(self, config: dict, pipeline) -> None:
        """Raise PipelineError for a config this step cannot run; called before any step runs."""
        allowed = set(self.options) | {"id", "step", "data"}
        extra = sorted(set(config) - allowed)
        if extra:
            known = ", ".join(sorted(self.options)) or "none"
            raise PipelineError(
                f"step {config['id']!r} ({self.kind}): unknown option(s) {extra}; its options: {known}"
            )
        if self.wants_data(config):
            name = config.get("data", "default")
            if name not in pipeline.data:
                have = sorted(pipeline.data) or "none (add a data: section)"
                raise PipelineError(f"step {config['id']!r} uses data set {name!r}; the pipeline has {have}")
        self.validate(config, pipeline)

    def wants_data(self, config: dict) -> bool:
        """Whether this step reads a data set (its texts are then part of the step's key)."""
        return self.uses_data

    def validate(self, config: dict, pipeline) -> None:
        """Step-specific checks (option types, ranges)."""

    def inputs(self, config: dict) -> list[str]:
        """Ids of the earlier steps this one reads."""
        return []

    def run(self, ctx: Context, config: dict, inputs: dict[str, StepOutput]) -> StepOutput:
        raise NotImplementedError

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs: dict[str, StepOutput]):
        """Write this step's files under ``ctx.out`` (atomically); return their paths."""
        return []

    def figures(self, config: dict, output: StepOutput) -> list:
        return []


def require(config: dict, key: str, kinds, what: str):
    """The value of a required option, type-checked, or a PipelineError that names the step and option."""
    if key not in config:
        raise PipelineError(f"step {config['id']!r} ({config['step']}) needs option {key!r}: {what}")
    return option(config, key, kinds, what)


def option(config: dict, key: str, kinds, what: str, default=None):
    """The value of an optional option (``default`` when absent), type-checked (a bool is not an int)."""
    if key not in config:
        return default
    value, kinds = config[key], _tuple(kinds)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise PipelineError(f"step {config['id']!r}: option {key!r} must be {what}, got {value!r}")
    return value


def _tuple(kinds) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.parquet")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
