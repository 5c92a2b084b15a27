"""LocalExecutor: shards recorded once under their content key, read back on a re-run, results that
match a direct computation, and a sweep file run from the CLI."""

import json

import numpy as np
import pytest
import torch

from workbench.exec import JobSpec, LocalExecutor, make_shards, run_jobs, shard_key
from workbench.seam.interventions import mask_heads
from workbench.seam.spec import CaptureSpec


def mean_logprob(model, text, interventions=()):
    ids = model.encode(text)
    logits = model.logits(ids, interventions=interventions)[0, :-1].double()
    return float(torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0].mean())


def test_local_jobs_match_direct_computation_and_are_recorded_once(tiny, store, prompts):
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    masked = [i.to_dict() for i in mask_heads([(0, 1), (1, 2)])]
    jobs = [
        JobSpec(task="logprob", model="tiny-gqa", label="baseline"),
        JobSpec(task="logprob", model="tiny-gqa", interventions=masked, label="masked"),
    ]
    shards = make_shards(prompts, 2)
    table = run_jobs(executor, jobs, shards)
    assert list(table["label"]) == ["baseline"] * len(prompts) + ["masked"] * len(prompts)
    assert list(table["prompt"]) == list(range(len(prompts))) * 2
    for index in (0, len(prompts) - 1):
        assert table["mean_logprob"][index] == pytest.approx(mean_logprob(tiny, prompts[index]), abs=1e-9)
    masked_direct = mean_logprob(tiny, prompts[0], mask_heads([(0, 1), (1, 2)]))
    assert table["mean_logprob"][len(prompts)] == pytest.approx(masked_direct, abs=1e-9)
    assert not np.allclose(table["mean_logprob"][: len(prompts)], table["mean_logprob"][len(prompts) :])

    runs = store.runs(kind="shard")
    expected = {shard_key(job, shard) for job in jobs for shard in shards}
    assert sorted(runs["run_id"]) == sorted(expected)  # every shard exactly once
    again = list(executor.map(jobs[1], shards))
    assert all(result.cached for result in again)
    assert len(store.runs(kind="shard")) == len(expected)
    merged = np.concatenate([r.frame["mean_logprob"].to_numpy() for r in again])
    np.testing.assert_array_equal(merged, table["mean_logprob"][len(prompts) :].to_numpy())


def test_capture_task_gives_the_capture_head_table(tiny, store, prompts):
    spec = CaptureSpec(statistics=("entropy", "sink_mass"))
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    job = JobSpec(task="capture", model="tiny-gqa", capture=spec.to_dict(), params={"window": 48})
    table = run_jobs(executor, [job], make_shards(prompts[:2], 1))
    direct = tiny.capture(tiny.encode(prompts[1], window=48), spec).head_table()
    got = table[table["prompt"] == 1].reset_index(drop=True)
    np.testing.assert_allclose(got["sink_mass"], direct["sink_mass"], rtol=0, atol=1e-12)
    assert set(got["tokens"]) == {48}


def test_sweep_cli_writes_merged_table(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from workbench.cli import app

    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "store"))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "sweep: s\nmodels: [tiny-gqa]\ntask: logprob\nparams: {window: 32}\nshard_size: 2\n"
        "data: {texts: ['one two three four five', 'six seven eight nine ten', 'eleven twelve']}\n"
        "conditions:\n  baseline: []\n  masked: {mask: [[0, 0], [1, 3]], mode: zero}\n"
    )
    result = CliRunner().invoke(app, ["pipeline", "sweep", str(sweep), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [m["label"] for m in summary["means"]] == ["baseline", "masked"]
    assert summary["shards"] == 2 and summary["prompts"] == 3

    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep: s\nmodels: [tiny-gqa]\nconditions: {x: {mask: [[0]]}}\ndata: {texts: [a]}\n")
    result = CliRunner().invoke(app, ["pipeline", "sweep", str(bad)])
    assert result.exit_code == 2 and "mask must be a list of [layer, head] pairs" in result.output
    result = CliRunner().invoke(app, ["pipeline", "sweep", str(sweep), "--executor", "dask"])
    assert result.exit_code == 2 and "unknown executor" in result.output


def test_a_shard_records_the_backends_it_used_not_earlier_work(tiny, store, prompts):
    """A long-lived model (an executor's, a notebook's) keeps running; each shard's record names only
    the attention backends of that shard (a padded capture before it used the PyTorch path)."""
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    tiny.backends.add("triton")  # as if earlier work had used the kernels
    job = JobSpec(task="logprob", model="tiny-gqa", label="baseline")
    run_jobs(executor, [job], make_shards(prompts[:1], 1))
    (run,) = store.runs(kind="shard").to_dict("records")
    assert run["backend"] == "sdpa"  # no statistics asked: plain SDPA through the seam
