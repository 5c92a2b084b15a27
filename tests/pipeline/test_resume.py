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


def run_driver(tiny_yaml, out, results, target, phase):
    env = {"WORKBENCH_RESULTS": str(results), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    if os.environ.get("PYTHONPATH"):  # a source tree on the path (benchmarks/gpu_env.sh): the driver runs the same code
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
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
