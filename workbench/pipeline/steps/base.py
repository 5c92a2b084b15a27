"""What every pipeline step is: a config checked before anything runs, named inputs, one output.

A step's output is a few DataFrames and a JSON summary; the runner records it in the store under a
content hash of (step kind, version, config, model, data, the content of the files its options name,
inputs' hashes), so a finished step is read back instead of re-run. ``materialize`` writes a step's
files into the output folder (on every run, from the recorded output), and ``figures`` gives the plotly
figures for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.options import OptionError, StepOptions, from_config, input_paths, option_help
from workbench.store.record import StepOutput, write_parquet  # noqa: F401  (the run record; re-exported)


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
    config: dict | None = None  # the running step's config (None: a Step run on its own, see run_step)
    loaded: Any = None  # the model, when the caller has it already (a Step run on its own)
    where: Any = None  # a Step run on its own: its resolved ``Runtime`` (device, dtype)
    model_name: str | None = None  # a Step run on its own: the model to load
    data: dict[str, list[str]] | None = None  # a Step run on its own: its texts (a sweep's prompt)

    def work_file(self, config: dict | None, suffix: str) -> Path | None:
        """Where the running step keeps its partial work: ``.work/<id>-<key><suffix>`` in the output
        folder. Named by the step's key, so a changed option starts afresh; the runner removes the step's
        work files once the step is recorded. None for a Step run on its own (no partial work is kept)."""
        config = config or self.config
        if self.step_key is None or config is None:
            return None
        return self.out / ".work" / f"{config['id']}-{self.step_key}{suffix}"

    def units(self, config: dict | None = None):
        """The running step's log of finished units (``workbench.checkpoint.UnitLog``): a rerun after a
        kill continues inside the step. None for a Step run on its own."""
        from workbench.checkpoint import UnitLog

        path = self.work_file(config, ".jsonl")
        return None if path is None else UnitLog(path)

    def training_checkpoint(self, config: dict | None = None):
        """The running step's training state (``workbench.checkpoint.TrainingCheckpoint``); None for a
        Step run on its own."""
        from workbench.checkpoint import TrainingCheckpoint

        path = self.work_file(config, ".safetensors")
        return None if path is None else TrainingCheckpoint(path)

    def texts(self, name: str) -> list[str]:
        if self.pipeline is None:
            if not self.data or name not in self.data:
                raise ValueError("this Step reads texts: give them (run_step(..., texts=[...])) or a file option")
            return self.data[name]
        from workbench.pipeline.data import load_texts

        return load_texts(self.pipeline.data[name])

    def step_texts(self) -> list[str]:
        """The running step's texts: its data set in a pipeline, the given texts when run on its own."""
        return self.texts(self.config.get("data", "default") if self.config else "default")

    def model(self):
        """The pipeline's model, loaded once (shared with a local executor)."""
        if self.loaded is not None:
            return self.loaded
        if self.pipeline is None:  # a Step run on its own: its options name the model
            from workbench.runners.hf import load_model

            self.loaded = load_model(self.model_name, device=self.where.device, dtype=self.where.dtype)
            return self.loaded
        loader = getattr(self.executor, "model", None)
        if loader is None:  # a remote executor: load a driver-side copy only when a step needs one
            from workbench.exec.base import load_job_model

            if not hasattr(self, "_model"):
                self._model = load_job_model(self.pipeline.model, self.pipeline.dtype, self.pipeline.device)
            return self._model
        return loader(self.pipeline.model, self.pipeline.dtype)


class Step:
    """Base class: subclasses set ``kind``, ``options`` (allowed config keys with help) and implement run.

    An analysis Step instead sets ``Options`` (a ``StepOptions`` dataclass: its defaults live there only),
    implements ``validate_options(options)`` and ``execute(ctx, options, inputs) -> StepOutput``; the CLI,
    pipelines, sweeps and notebooks all run it through ``workbench.pipeline.runner`` (``run_step`` on its
    own, ``run_pipeline`` in a pipeline), the only writer of runs. ``record_kind`` is the store kind of
    its stand-alone run.

    A plumbing Step (``plumbing = True``: select, validate, report) reads other steps' outputs, so it runs
    only in a pipeline; it too has an ``Options`` dataclass (its keys, types and defaults), parsed by
    ``parse``, but keeps its own ``validate`` (checks against the other steps) and ``run``."""

    kind: ClassVar[str] = "step"
    version: ClassVar[int] = 1
    options: ClassVar[dict[str, str]] = {}
    uses_data: ClassVar[bool] = False
    Options: ClassVar[type[StepOptions] | None] = None
    record_kind: ClassVar[str | None] = None
    plumbing: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("Options") is not None:
            cls.options = option_help(cls.Options)

    def parse(self, config: dict, pipeline) -> StepOptions:
        """This step's options from its pipeline config (types checked); model/device/dtype from the pipeline."""
        try:
            return from_config(
                self.Options, config, where=f"step {config['id']!r}", base=Path(pipeline.base),
                model=pipeline.model, device=pipeline.device, dtype=pipeline.dtype,
            )  # fmt: skip
        except OptionError as error:
            raise PipelineError(str(error)) from None

    def validate_options(self, options: StepOptions) -> None:
        """Range checks of an analysis Step's options (``OptionError``), for every front door at once."""

    def execute(self, ctx: Context, options: StepOptions, inputs: dict[str, StepOutput]) -> StepOutput:
        raise NotImplementedError

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
        """Step-specific checks (option types, ranges); an analysis Step checks its parsed options."""
        if self.Options is not None:
            try:
                self.validate_options(self.parse(config, pipeline))
            except OptionError as error:
                raise PipelineError(f"step {config['id']!r}: {error}") from None

    def inputs(self, config: dict) -> list[str]:
        """Ids of the earlier steps this one reads."""
        return []

    def input_files(self, config: dict, pipeline) -> dict[str, list[str]]:
        """``{option: [path, ...]}``: the files and folders this step reads through its options, as it
        will open them (relative paths resolved); their content is part of the step's key, so an edited
        file reruns the step. The ``path`` fields of ``Options`` (``options.input_paths``); a step whose
        files sit inside another option (validate's ``niah``) says so here."""
        if self.Options is None:
            return {}
        return input_paths(self.Options, self.parse(config, pipeline))

    def run(self, ctx: Context, config: dict, inputs: dict[str, StepOutput]) -> StepOutput:
        if self.Options is None:
            raise NotImplementedError
        return self.execute(ctx, self.parse(config, ctx.pipeline), inputs)

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
