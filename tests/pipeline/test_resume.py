"""Kill-and-resume: a pipeline process SIGKILLed at several points (before a store write, between a
write's file rename and its index transaction, right after a write), restarted each time, finishes
with every step and shard recorded exactly once and the same files as one uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from workbench.exec import LocalExecutor
from workbench.pipeline import load_pipeline, run_pipeline
from workbench.store import Store

HERE = Path(__file__).parent
# (Nth store write of that process, where to die); each restart resumes from what the previous left
KILLS = [(2, "before"), (2, "staged"), (3, "after")]


def driver_env(results) -> dict:
    """A bare environment, but the tree under test: PYTHONPATH passes through (a source checkout run
    with benchmarks/gpu_env.sh is not the installed package)."""

    env = {"WORKBENCH_RESULTS": str(results), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return {**env, **{k: os.environ[k] for k in ("PYTHONPATH", "TMPDIR") if k in os.environ}}


def run_driver(tiny_yaml, out, results, target, phase):
    env = driver_env(results)
    command = [sys.executable, str(HERE / "crash_driver.py"), str(tiny_yaml), str(out), str(target), phase]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_killed_pipeline_resumes_with_nothing_lost_or_duplicated(tiny, tmp_path, tiny_yaml):
    # one uninterrupted run (in this process) is the reference
    reference_store = Store(tmp_path / "reference-store")
    executor = LocalExecutor(reference_store, progress=False)
    executor.adopt(tiny)
    reference = run_pipeline(
        load_pipeline(tiny_yaml, out=tmp_path / "reference"),
        store=reference_store,
        executor=executor,
        echo=lambda m: None,
    )

    results, out = tmp_path / "store", tmp_path / "out"
    for target, phase in KILLS:
        done = run_driver(tiny_yaml, out, results, target, phase)
        assert done.returncode == -signal.SIGKILL, (target, phase, done.stdout, done.stderr[-2000:])
    final = run_driver(tiny_yaml, out, results, 0, "never")
    assert final.returncode == 0, final.stderr[-3000:]
    assert "read back" in final.stdout  # it resumed: some steps were already done

    store = Store(results)
    runs = store.runs()
    assert runs["run_id"].is_unique
    steps = runs[runs["kind"] == "pipeline-step"]
    assert sorted(steps["run_id"]) == sorted(reference.run_ids.values())  # each step exactly once
    reference_runs = reference_store.runs()
    for kind in ("shard", "capture", "pipeline"):
        assert sorted(runs[runs["kind"] == kind]["run_id"]) == sorted(
            reference_runs[reference_runs["kind"] == kind]["run_id"]
        ), kind
    duplicates = store.query(
        "SELECT run_id, name, layer, head, metric, count(*) AS n FROM head_tables GROUP BY ALL HAVING n > 1"
    )
    assert duplicates.empty
    assert len(store.query("SELECT * FROM head_tables")) == len(
        reference_store.query("SELECT * FROM head_tables")
    )
    folders = {p.name for p in (results / "runs").iterdir() if not p.name.startswith(".")}
    assert folders == set(runs["run_id"])  # no orphaned (written but unindexed) run folders

    for name in ("HEADS.json", "summary.json", "report.html"):
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "capture.parquet"), pd.read_parquet(tmp_path / "reference" / "capture.parquet")
    )
    for step_id, run_id in reference.run_ids.items():
        assert store.summary(run_id) == reference_store.summary(run_id), step_id
    assert json.loads((out / "HEADS.json").read_text())["heads"]


UNITS_PIPELINE = """\
pipeline: units
model: tiny-gqa
steps:
  - {id: retrieval, step: retrieval, lengths: [240, 260], depths: [0, 50, 100], max_new_tokens: 4}
"""


def test_killed_step_continues_from_its_finished_units(tiny, tmp_path, monkeypatch):
    """A retrieval step killed after 7 of its 18 NIAH runs: the rerun generates only the other 11 and
    writes exactly what one uninterrupted run writes."""
    import workbench.analyses.retrieval.niah as niah

    pipeline = tmp_path / "units.yaml"
    pipeline.write_text(UNITS_PIPELINE)
    reference_store = Store(tmp_path / "reference-store")
    executor = LocalExecutor(reference_store, progress=False)
    executor.adopt(tiny)
    reference = run_pipeline(
        load_pipeline(pipeline, out=tmp_path / "reference"), store=reference_store, executor=executor, echo=lambda m: None
    )
    assert reference.outputs["retrieval"].summary["num_runs"] == 18

    results, out = tmp_path / "store", tmp_path / "out"
    env = driver_env(results)
    command = [sys.executable, str(HERE / "unit_crash_driver.py"), str(pipeline), str(out), "7"]
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    logs = list((out / ".work").glob("retrieval-*.jsonl"))
    assert len(logs) == 1 and len(logs[0].read_text().splitlines()) == 7

    generated = []
    original = niah.generate_with_decode_capture
    monkeypatch.setattr(
        niah, "generate_with_decode_capture", lambda *a, **k: generated.append(1) or original(*a, **k)
    )
    store = Store(results)
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    messages = []
    rerun = run_pipeline(load_pipeline(pipeline, out=out), store=store, executor=executor, echo=messages.append)
    assert len(generated) == 11  # the 7 finished runs were read back, not generated again
    assert any("continuing after 7 finished unit(s)" in m for m in messages), messages
    assert not list((out / ".work").glob("*.jsonl"))  # the step is recorded; its unit log is gone

    got, want = rerun.outputs["retrieval"], reference.outputs["retrieval"]
    pd.testing.assert_frame_equal(got.table("heads"), want.table("heads"))
    pd.testing.assert_frame_equal(got.table("runs").drop(columns="seconds"), want.table("runs").drop(columns="seconds"))
    assert got.summary == want.summary
    assert rerun.run_ids == reference.run_ids
    pd.testing.assert_frame_equal(pd.read_parquet(out / "retrieval.parquet"), pd.read_parquet(tmp_path / "reference" / "retrieval.parquet"))
