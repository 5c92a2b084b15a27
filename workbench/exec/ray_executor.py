"""``RayExecutor``: fan shards out over model replicas on a Ray cluster (Ray Core actors).

Each replica is an actor that loads its model once, in ``__init__``, and runs ``run_shard``: the same
function as ``LocalExecutor``, writing the shard straight into the store under its content key. A replica
that spans several GPUs loads with an accelerate ``device_map`` inside the actor. A replica that dies
(node lost, OOM, ``ray.kill``) is restarted by Ray and its shard retried; a shard recorded before the
crash is read back, never written twice. Workers need the store's folder: on several nodes, put
``WORKBENCH_RESULTS`` on a shared filesystem.

    RayExecutor(address="auto")          # join the cluster this machine belongs to
    RayExecutor(address="10.0.0.1:6379") # a head node's GCS address
    RayExecutor()                        # start a private single-node cluster
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from workbench.exec.jobs import JobSpec, Shard, ShardResult
from workbench.store.store import Store, default_store


class Replica:
    """One model replica (wrapped by ``ray.remote`` at run time, so importing this needs no Ray)."""

    def __init__(self, model: str, dtype: str | None, num_gpus: float):
        import torch

        from workbench.exec.base import load_job_model

        if num_gpus > 1:  # one replica over several GPUs: layers split by accelerate inside the actor
            from accelerate import dispatch_model, infer_auto_device_map

            self.model = load_job_model(model, dtype, "cpu")
            device_map = infer_auto_device_map(self.model.hf, no_split_module_classes=["LlamaDecoderLayer"])
            self.model.hf = dispatch_model(self.model.hf, device_map=device_map)
        else:
            self.model = load_job_model(
                model, dtype, "cuda" if num_gpus and torch.cuda.is_available() else "cpu"
            )

    def pid(self) -> int:
        return os.getpid()

    def run(self, job_json: str, shard_json: str, store_root: str) -> dict:
        from workbench.exec.tasks import run_shard

        job, shard = JobSpec.from_json(job_json), Shard.from_json(shard_json)
        result = run_shard(self.model, job, shard, Store(store_root))
        return {"key": result.key, "start": result.start, "frame": result.frame, "cached": result.cached}


class RayExecutor:
    """Shards of a job spread over ``replicas`` actors, each holding one copy of the job's model.

    Args:
        address: None starts a private local cluster; "auto" joins the running cluster; "host:port" a
            head node's GCS address. Ignored when Ray is already initialised in this process.
        replicas: actors per model (default: as many as the cluster's GPUs, or CPUs, allow).
        num_gpus_per_replica: GPUs per actor; > 1 splits the model over them with a device_map.
        num_cpus_per_replica: CPUs per actor.
        max_attempts: tries per shard (Ray restarts the actor and retries the shard in between).
        init: extra ``ray.init`` keyword arguments (e.g. ``num_cpus``, ``_node_ip_address``).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        store: Store | None = None,
        replicas: int | None = None,
        num_gpus_per_replica: float = 0,
        num_cpus_per_replica: float = 1,
        max_attempts: int = 3,
        init: dict | None = None,
        progress: bool = True,
    ):
        self.address = address
        self.store = store or default_store()
        self.replicas = replicas
        self.num_gpus = num_gpus_per_replica
        self.num_cpus = num_cpus_per_replica
        self.max_attempts = max_attempts
        self.init_kwargs = dict(init or {})
        self.progress = progress
        self._pools: dict[tuple[str, str | None], list] = {}
        self.retries = 0  # shards resubmitted by this executor after an actor died for good

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, replicas={self.replicas}, "
            f"gpus_per_replica={self.num_gpus}, store={self.store!r})"
        )

    # --- cluster and actors -----------------------------------------------------------------------

    def _ray(self):
        try:
            import ray
        except ImportError:
            raise RuntimeError("the Ray executor needs ray: pip install 'ray>=2.50'") from None
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address not in (None, "local"):
                kwargs.pop("num_cpus", None)
                kwargs.pop("num_gpus", None)
            ray.init(address=self.address, **kwargs)
        return ray

    def _replica_count(self, ray, shards: int) -> int:
        if self.replicas:
            return max(1, min(self.replicas, shards))
        resources = ray.cluster_resources()
        if self.num_gpus:
            fit = int(resources.get("GPU", 0) // self.num_gpus)
        else:
            fit = int(resources.get("CPU", 1) // max(self.num_cpus, 1e-9))
        if fit < 1:
            raise RuntimeError(
                f"the Ray cluster has {resources.get('GPU', 0)} GPUs and {resources.get('CPU', 0)} CPUs: "
                f"not enough for one replica ({self.num_gpus} GPUs, {self.num_cpus} CPUs each)"
            )
        return max(1, min(fit, shards))

    def _new_actor(self, ray, model: str, dtype: str | None):
        remote = ray.remote(Replica).options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_restarts=self.max_attempts - 1,
            max_task_retries=self.max_attempts - 1,
        )
        return remote.remote(model, dtype, self.num_gpus)

    def actors(self, model: str, dtype: str | None = None, count: int = 1) -> list:
        """The replicas of ``model`` (started on first use, kept for later jobs on the same model)."""
        ray = self._ray()
        pool = self._pools.setdefault((model, dtype), [])
        while len(pool) < count:
            pool.append(self._new_actor(ray, model, dtype))
        return pool

    # --- running ----------------------------------------------------------------------------------

    def map(self, job: JobSpec, shards: Iterable[Shard]) -> Iterator[ShardResult]:
        job.validate()
        shards = list(shards)
        if not shards:
            return
        ray = self._ray()
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        lost = (ActorDiedError, ActorUnavailableError, RayActorError)
        pool = self.actors(job.model, job.dtype, self._replica_count(ray, len(shards)))
        job_json, store_root = job.to_json(), str(self.store.root.resolve())
        pending = list(enumerate(shards))[::-1]
        attempts = {index: 0 for index in range(len(shards))}
        running: dict = {}  # object ref -> (shard index, actor slot)
        free = list(range(len(pool)))
        bar = None
        if self.progress and len(shards) > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(shards), desc=f"{job.label or job.task} (ray)", unit="shard", leave=False)
        try:
            while pending or running:
                while pending and free:
                    index, shard = pending.pop()
                    slot = free.pop()
                    attempts[index] += 1
                    ref = pool[slot].run.remote(job_json, shard.to_json(), store_root)
                    running[ref] = (index, slot)
                done, _ = ray.wait(list(running), num_returns=1)
                ref = done[0]
                index, slot = running.pop(ref)
                try:
                    payload = ray.get(ref)
                except lost:
                    # the actor is gone for good (its restarts are used up): replace it, retry the shard
                    if attempts[index] >= self.max_attempts:
                        raise RuntimeError(
                            f"shard {index} of job {job.label or job.task} failed {attempts[index]} times: "
                            "its replica kept dying (out of memory? a node lost?)"
                        ) from None
                    self.retries += 1
                    pool[slot] = self._new_actor(ray, job.model, job.dtype)
                    pending.append((index, shards[index]))
                    free.append(slot)
                    continue
                free.append(slot)
                if bar is not None:
                    bar.update()
                yield ShardResult(payload["key"], job, payload["start"], payload["frame"], payload["cached"])
        finally:
            if bar is not None:
                bar.close()
            for ref in running:
                ray.cancel(ref, force=False)

    def close(self) -> None:
        if not self._pools:
            return
        import ray

        if ray.is_initialized():
            for pool in self._pools.values():
                for actor in pool:
                    ray.kill(actor, no_restart=True)
        self._pools.clear()
