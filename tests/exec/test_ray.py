"""RayExecutor on a real single-node Ray cluster (127.0.0.1): the same store contents as the local
executor, and an actor killed mid-shard is restarted, its shard retried and recorded exactly once."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.exec import JobSpec, LocalExecutor, RayExecutor, make_shards, run_jobs, shard_key
from workbench.seam.interventions import mask_heads
from workbench.seam.spec import CaptureSpec
from workbench.store import Store

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def executor(ray_cluster, tmp_path_factory):
    runner = RayExecutor(store=Store(tmp_path_factory.mktemp("ray-store")), replicas=2, progress=False)
    yield runner
    runner.close()


def sweep_jobs() -> list[JobSpec]:
    masked = [i.to_dict() for i in mask_heads([(0, 1), (1, 3)])]
    capture = CaptureSpec(statistics=("entropy", "sink_mass", "mean_distance"), key_statistics=("received",))
    return [
        JobSpec(task="logprob", model="tiny-gqa", label="baseline", params={"window": 96}),
        JobSpec(
            task="logprob", model="tiny-gqa", interventions=masked, label="masked", params={"window": 96}
        ),
        JobSpec(task="capture", model="tiny-gqa", capture=capture.to_dict(), params={"window": 96}),
    ]


def shard_files(store: Store) -> dict[str, bytes]:
    runs = store.root / "runs"
    return {str(p.relative_to(runs)): p.read_bytes() for p in sorted(runs.rglob("*")) if p.is_file()}


def test_ray_matches_local_executor_byte_for_byte(executor, tiny, tmp_path, prompts):
    jobs, shards = sweep_jobs(), make_shards(prompts, 2)
    local = LocalExecutor(Store(tmp_path / "local"), progress=False)
    local.adopt(tiny)
    expected = run_jobs(local, jobs, shards)
    executor.store = Store(tmp_path / "ray")
    got = run_jobs(executor, jobs, shards)
    assert got.equals(expected)
    local_files, ray_files = shard_files(local.store), shard_files(executor.store)
    assert len(local_files) == 3 * len(jobs) * len(shards)  # result.parquet, run.json, summary.json
    assert ray_files.keys() == local_files.keys()
    assert all(ray_files[name] == local_files[name] for name in local_files)
    pids = {int(line.split()[0]) for p in (executor.store.root / "shard-attempts").glob("*.log")
            for line in p.read_text().splitlines()}  # fmt: skip
    assert len(pids) == 2  # both replicas did work


def test_actor_killed_mid_shard_is_retried_and_shard_written_once(executor, ray_cluster, tmp_path, prompts):
    ray = ray_cluster
    store = Store(tmp_path / "ray-kill")
    executor.store = store
    long_prompts = [" ".join(prompts)[i * 40 :][:900] for i in range(48)]
    job = JobSpec(task="logprob", model="tiny-gqa", label="slow", params={"window": 900})
    shards = make_shards(long_prompts, 12)
    actors = executor.actors("tiny-gqa", None, 2)
    pid_to_actor = dict(zip(ray.get([a.pid.remote() for a in actors]), actors, strict=True))
    attempts = store.root / "shard-attempts"
    killed: dict = {}

    def kill_first_shard_in_flight():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for log in sorted(attempts.glob("*.log")) if attempts.exists() else []:
                lines = log.read_text().splitlines()
                if len(lines) == 1 and not store.has(log.stem):  # started, not yet recorded
                    pid = int(lines[0].split()[0])
                    ray.kill(pid_to_actor[pid], no_restart=False)
                    killed.update(key=log.stem, pid=pid)
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_first_shard_in_flight)
    watcher.start()
    results = list(executor.map(job, shards))
    watcher.join()
    assert killed, "no shard was caught in flight"
    key = killed["key"]
    log = (attempts / f"{key}.log").read_text().splitlines()
    assert len(log) == 2 and int(log[0].split()[0]) == killed["pid"] != int(log[1].split()[0])

    runs = store.runs(kind="shard")
    assert sorted(runs["run_id"]) == sorted(shard_key(job, s) for s in shards)  # each exactly once
    assert sorted(r.key for r in results) == sorted(runs["run_id"])
    assert sum(r.key == key for r in results) == 1
    assert len(list(Path(store.root / "runs").glob(f"{key}*"))) == 1
    frame = store.array(key, "result")
    assert len(frame) == 12 and frame["prompt"].is_unique

    reference = LocalExecutor(Store(tmp_path / "reference"), progress=False)
    expected = run_jobs(reference, [job], [s for s in shards if shard_key(job, s) == key])
    np.testing.assert_array_equal(frame["mean_logprob"].to_numpy(), expected["mean_logprob"].to_numpy())
