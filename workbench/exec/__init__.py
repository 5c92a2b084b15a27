"""Running sweeps: jobs as plain data, an ``Executor`` protocol, a local and a Ray executor.

    from workbench.exec import JobSpec, LocalExecutor, RayExecutor, make_shards, run_jobs
    job = JobSpec(task="logprob", model="tiny-gqa", label="baseline")
    table = run_jobs(LocalExecutor(), [job], make_shards(prompts, 4))

See ``workbench.exec.jobs`` for the job format and ``RayExecutor`` for clusters.
"""

from workbench.exec.base import Executor, LocalExecutor, run_jobs
from workbench.exec.jobs import JobSpec, Shard, ShardResult, make_shards, shard_key
from workbench.exec.ray_executor import RayExecutor
from workbench.exec.tasks import TASKS, register_task, run_shard

__all__ = [
    "TASKS",
    "Executor",
    "JobSpec",
    "LocalExecutor",
    "RayExecutor",
    "Shard",
    "ShardResult",
    "make_shards",
    "register_task",
    "run_jobs",
    "run_shard",
    "shard_key",
]


def make_executor(kind: str = "local", address: str | None = None, **options) -> Executor:
    """``local`` (default) or ``ray`` (``address``: None, "auto" or "host:port")."""
    from workbench.seam.spec import SpecError

    if kind == "local":
        if address:
            raise SpecError("--address only applies to --executor ray")
        return LocalExecutor(**options)
    if kind == "ray":
        return RayExecutor(address, **options)
    raise SpecError(f"unknown executor {kind!r}; choose local or ray")
