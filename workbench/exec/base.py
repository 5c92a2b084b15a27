"""The ``Executor`` protocol and the in-process ``LocalExecutor`` (the default everywhere).

An executor maps one job over shards and yields each shard's result as it completes; every shard is
recorded in the store under its content key, so a shard already done is read back, not recomputed.
``run_jobs`` runs several jobs (a sweep) and merges their rows in a fixed order, so the merged table
does not depend on which executor ran it or in what order shards finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import pandas as pd

from workbench.devices import DEFAULT_DEVICE
from workbench.exec.jobs import JobSpec, Shard, ShardResult
from workbench.store.store import Store, default_store


@runtime_checkable
class Executor(Protocol):
    store: Store

    def map(self, job: JobSpec, shards: Iterable[Shard]) -> Iterator[ShardResult]:
        """Run ``job`` on every shard; yield results as they complete (any order)."""
        ...

    def close(self) -> None: ...


def load_job_model(model: str, dtype: str | None = None, device=DEFAULT_DEVICE):
    """``model`` on ``device`` in ``dtype`` (names or torch objects; None = auto, see ``workbench.devices``)."""
    from workbench.devices import resolve_device, resolve_dtype
    from workbench.runners.hf import load_model

    where = resolve_device(device) if device is None or isinstance(device, str) else device
    return load_model(model, device=where, dtype=resolve_dtype(dtype, where))


class LocalExecutor:
    """Runs shards one after another in this process; loaded models are kept for the next job.

    ``device``: auto, cpu, cuda or cuda:N (``workbench.devices``), checked here, before any job runs."""

    def __init__(self, store: Store | None = None, device: str = DEFAULT_DEVICE, progress: bool = True):
        from workbench.devices import resolve_device

        self.store = store or default_store()
        self.device = resolve_device(device)
        self.progress = progress
        self._models: dict[tuple[str, str | None], object] = {}

    def __repr__(self) -> str:
        return f"LocalExecutor(store={self.store!r}, device={str(self.device)!r})"

    def model(self, name: str, dtype: str | None = None):
        """The loaded model (loaded once per executor)."""
        key = (name, dtype)
        if key not in self._models:
            self._models[key] = load_job_model(name, dtype, self.device)
        return self._models[key]

    def adopt(self, model, dtype: str | None = None) -> None:
        """Reuse a model already loaded by the caller (e.g. a notebook's) for jobs naming it."""
        self._models[(model.name, dtype)] = model

    def map(self, job: JobSpec, shards: Iterable[Shard]) -> Iterator[ShardResult]:
        from workbench.exec.tasks import run_shard

        job.validate()
        shards = list(shards)
        model = self.model(job.model, job.dtype)
        iterator = shards
        if self.progress and len(shards) > 1:
            from tqdm.auto import tqdm

            iterator = tqdm(shards, desc=job.label or job.task, unit="shard", leave=False)
        for shard in iterator:
            yield run_shard(model, job, shard, self.store)

    def close(self) -> None:
        self._models.clear()


def run_jobs(executor: Executor, jobs: Sequence[JobSpec], shards: Sequence[Shard]) -> pd.DataFrame:
    """Every job over every shard, merged: columns ``label, model, prompt, ...`` in (job, prompt) order."""
    for job in jobs:
        job.validate()
    frames = []
    for order, job in enumerate(jobs):
        for result in executor.map(job, shards):
            frames.append(result.frame.assign(_job=order, label=job.label, model=job.model))
    if not frames:
        return pd.DataFrame()
    merged = pd.concat(frames, ignore_index=True)
    sort = ["_job", "prompt"] + [c for c in ("layer", "head") if c in merged]
    merged = merged.sort_values(sort, kind="stable").drop(columns="_job").reset_index(drop=True)
    front = ["label", "model", "prompt"]
    return merged[front + [c for c in merged.columns if c not in front]]
