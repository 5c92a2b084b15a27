"""Sweep work as plain data: what to run (``JobSpec``), on which prompts (``Shard``), what came back
(``ShardResult``).

Specs hold no closures or tensors, only JSON values, so the CLI, the app and Ray workers pass them
around as text; ``JobSpec.from_json(job.to_json()) == job`` for every job. A shard's key is a content
hash of (job, shard, the content of the files the job's task reads): the store records each shard under
that key exactly once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

import pandas as pd

from workbench.seam.spec import CaptureSpec, SpecError
from workbench.store.store import content_hash


def _plain(value):
    """JSON-normal form (tuples become lists), so equal specs compare and hash equal."""
    return json.loads(json.dumps(value, sort_keys=True))


@dataclass(frozen=True)
class JobSpec:
    """One model, one capture spec, one intervention set and one task, applied to every prompt of a shard.

    Attributes:
        task: what each prompt computes (``workbench.exec.tasks.TASKS``: ``logprob``, ``capture``, ...).
        model: a registered name (``workbench models``), a local checkpoint folder or a HF id.
        dtype: torch dtype name for the weights (None = auto: bfloat16 on CUDA, float32 on CPU).
        capture: a ``CaptureSpec.to_dict()`` for tasks that capture statistics (None = none).
        interventions: ``Intervention.to_dict()`` items applied on every forward.
        params: task parameters (JSON values), e.g. ``{"window": 256}``.
        label: the condition's name in merged tables ("baseline", "masked", ...).
        seed: seeds torch before each shard, for tasks that sample.
    """

    task: str
    model: str
    dtype: str | None = None
    capture: dict | None = None
    interventions: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    label: str = ""
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "interventions", _plain(list(self.interventions)))
        object.__setattr__(self, "params", _plain(dict(self.params)))
        if self.capture is not None:
            object.__setattr__(self, "capture", _plain(dict(self.capture)))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> JobSpec:
        if not isinstance(data, dict):
            raise SpecError(f"a job spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise SpecError(f"unknown job-spec field(s) {extra}; known fields: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise SpecError(f"malformed job spec: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as error:
            raise SpecError(f"job spec is not valid JSON: {error}") from None

    @property
    def key(self) -> str:
        return content_hash("job", self.to_dict())

    def capture_spec(self) -> CaptureSpec | None:
        return None if self.capture is None else CaptureSpec.from_dict(self.capture)

    def intervention_objects(self) -> list:
        from workbench.seam.interventions import Intervention

        return [Intervention.from_dict(item) for item in self.interventions]

    def validate(self) -> None:
        """Raise SpecError before anything runs if the task, capture spec or an intervention is bad."""
        from workbench.exec.tasks import TASKS

        if self.task not in TASKS:
            raise SpecError(f"unknown task {self.task!r}; known tasks: {sorted(TASKS)}")
        if self.dtype is not None:
            from workbench.devices import check_names

            check_names(None, self.dtype)
        self.capture_spec()
        self.intervention_objects()


@dataclass(frozen=True)
class Shard:
    """A contiguous run of prompts; ``start`` is the index of the first one in the whole prompt list."""

    start: int
    prompts: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "start", int(self.start))
        object.__setattr__(self, "prompts", tuple(str(p) for p in self.prompts))

    def to_dict(self) -> dict:
        return {"start": self.start, "prompts": list(self.prompts)}

    @classmethod
    def from_dict(cls, data: dict) -> Shard:
        return cls(int(data["start"]), tuple(data["prompts"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Shard:
        return cls.from_dict(json.loads(text))


def make_shards(prompts, size: int) -> list[Shard]:
    """Cut ``prompts`` into shards of at most ``size`` prompts, in order."""
    if size < 1:
        raise SpecError(f"shard size must be >= 1, got {size}")
    prompts = list(prompts)
    return [Shard(i, tuple(prompts[i : i + size])) for i in range(0, len(prompts), size)]


def shard_key(job: JobSpec, shard: Shard) -> str:
    """The store id of one shard's result: same job and prompts, same key, on any executor. A task that
    reads files through its params (``register_task(files=...)``: a NIAH haystack, a Step's HEADS.json)
    adds their content, so an edited file makes new shards; a job that names no file keeps its old key."""
    from workbench.exec.tasks import task_files  # tasks imports this module
    from workbench.store.store import files_hash

    files = task_files(job)
    extra = (("files", files_hash(files)),) if files else ()
    return content_hash("shard", job.to_dict(), shard.to_dict(), *extra)


@dataclass
class ShardResult:
    """One shard's rows (one or more per prompt, with a ``prompt`` column of global indices)."""

    key: str
    job: JobSpec
    start: int
    frame: pd.DataFrame
    cached: bool = False
