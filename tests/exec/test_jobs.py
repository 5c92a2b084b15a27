"""Job specs are plain data: JSON (and pickle) round trips, checked before anything runs."""

import json
import pickle
import subprocess
import sys

import pytest

from workbench.exec import JobSpec, Shard, make_shards, shard_key
from workbench.seam.interventions import HeadGate, HeadOutputAffine, LogitBias, ScaleKeys, UniformAttention
from workbench.seam.spec import CaptureSpec, SpecError


def example_job() -> JobSpec:
    interventions = [
        UniformAttention(0, 1),
        HeadGate(1, 2, gate=0.5, scope="prefill"),
        LogitBias(1, 0, keys=(0, 3), bias=-2.0),
        ScaleKeys(0, 3, keys=(0,), factor=0.5),
        HeadOutputAffine(1, 3, scale=(1.0,) * 16, offset=(0.1,) * 16),
    ]
    return JobSpec(
        task="capture",
        model="tiny-gqa",
        dtype="float32",
        capture=CaptureSpec(statistics=("entropy", "sink_mass"), key_statistics=("received",)).to_dict(),
        interventions=[i.to_dict() for i in interventions],
        params={"window": 64, "nested": {"a": (1, 2)}},
        label="masked",
        seed=3,
    )


def test_job_spec_json_round_trip_is_exact():
    job = example_job()
    again = JobSpec.from_json(job.to_json())
    assert again == job
    assert again.to_json() == job.to_json()
    assert again.key == job.key
    assert [i.to_dict() for i in again.intervention_objects()] == job.interventions
    assert again.capture_spec() == CaptureSpec.from_dict(job.capture)
    assert json.loads(job.to_json())["params"]["nested"]["a"] == [1, 2]  # tuples become lists, once


def test_shards_round_trip_and_keys_depend_on_job_and_prompts():
    shards = make_shards([f"prompt {i}" for i in range(5)], 2)
    assert [s.start for s in shards] == [0, 2, 4] and shards[-1].prompts == ("prompt 4",)
    assert [Shard.from_json(s.to_json()) for s in shards] == shards
    job = example_job()
    keys = {shard_key(job, s) for s in shards}
    assert len(keys) == 3
    other = JobSpec.from_dict({**job.to_dict(), "label": "other"})
    assert shard_key(other, shards[0]) != shard_key(job, shards[0])
    assert shard_key(JobSpec.from_json(job.to_json()), shards[0]) == shard_key(job, shards[0])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": "nope"}, "unknown task"),
        ({"interventions": [{"kind": "teleport", "layer": 0, "head": 0}]}, "unknown intervention kind"),
        ({"capture": {"statistics": ["entropy"], "color": 1}}, "unknown capture-spec field"),
    ],
)
def test_bad_jobs_fail_validation(change, message):
    job = JobSpec.from_dict({**example_job().to_dict(), **change})
    with pytest.raises(SpecError, match=message):
        job.validate()


def test_unknown_job_field_is_rejected():
    with pytest.raises(SpecError, match="unknown job-spec field"):
        JobSpec.from_dict({**example_job().to_dict(), "closure": "lambda"})


def test_job_specs_cross_a_process_boundary_without_notebook_modules(tmp_path):
    """Like nnsight's LocalSimulationBackend: a fresh process that imports only workbench.exec.jobs
    rebuilds the same job from JSON and from pickle (no IPython, Ray or pipeline modules needed)."""
    job = example_job()
    (tmp_path / "job.json").write_text(job.to_json())
    (tmp_path / "job.pkl").write_bytes(pickle.dumps(job))
    code = (
        "import json, pickle, sys\n"
        "from workbench.exec.jobs import JobSpec\n"
        f"a = JobSpec.from_json(open({str(tmp_path / 'job.json')!r}).read())\n"
        f"b = pickle.load(open({str(tmp_path / 'job.pkl')!r}, 'rb'))\n"
        "assert a == b, (a, b)\n"
        "a.validate()\n"
        "bad = [m for m in ('IPython', 'ipykernel', 'ray', 'workbench.pipeline', 'plotly') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(a.key)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == job.key
