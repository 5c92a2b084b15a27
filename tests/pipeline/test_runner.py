"""Running a pipeline: the files it writes, what the store records, and re-runs that skip finished steps."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.exec import LocalExecutor
from workbench.pipeline import load_pipeline, run_pipeline
from workbench.pipeline.data import load_texts

FILES = ("HEADS.json", "summary.json", "report.html", "capture.parquet")


def run(path, out, store, tiny, **kwargs):
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    return run_pipeline(load_pipeline(path, out=out), store=store, executor=executor, echo=lambda m: None)


def mean_logprob(model, text, window, interventions=()):
    ids = model.encode(text, window=window)
    logits = model.logits(ids, interventions=interventions)[0, :-1].double()
    return float(torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0].mean())


def test_pipeline_outputs_and_resume(tiny, store, tmp_path, tiny_yaml):
    from workbench.seam.interventions import mask_heads

    out = tmp_path / "out"
    first = run(tiny_yaml, out, store, tiny)
    assert set(first.status.values()) == {"ran"}
    for name in FILES:
        assert (out / name).exists(), name

    # HEADS.json is the rule applied to the capture table: top 3 by mean distance, minus sink heads
    capture = pd.read_parquet(out / "capture.parquet")
    top = capture.sort_values(["mean_distance", "layer", "head"], ascending=[False, True, True]).head(3)
    expected = [(int(r.layer), int(r.head)) for r in top.itertuples() if r.label != "sink"]
    heads = json.loads((out / "HEADS.json").read_text())
    assert [(h["layer"], h["head"]) for h in heads["heads"]] == expected
    assert heads["model"] == "tiny-gqa" and heads["params"]["step"] == "far"
    assert len(capture) == 8 and set(capture["tokens"]) == {160}

    # the validation numbers are the mean log-probs an independent computation gives
    paragraphs = load_texts(load_pipeline(tiny_yaml).data["paragraphs"])
    summary = first.outputs["masking"].summary
    baseline = np.mean([mean_logprob(tiny, p, 48) for p in paragraphs])
    selected = np.mean([mean_logprob(tiny, p, 48, mask_heads(expected)) for p in paragraphs])
    assert summary["conditions"]["baseline"]["mean_logprob"] == pytest.approx(baseline, abs=1e-9)
    assert summary["conditions"]["selected"]["delta_mean_logprob"] == pytest.approx(
        selected - baseline, abs=1e-9
    )
    assert summary["conditions"]["selected"]["delta_mean_logprob"] != 0
    assert set(summary["conditions"]) == {"baseline", "selected", "control-0"}

    report = (out / "report.html").read_text()
    assert report.count('class="plotly-graph-div"') >= 6 and "figure-masking-0" in report
    assert "Plotly.newPlot" in report and "plotly.js" in report.lower()  # inline, works offline

    before = {name: (out / name).read_bytes() for name in FILES}
    (out / "report.html").unlink()
    second = run(tiny_yaml, out, store, tiny)
    assert set(second.status.values()) == {"cached"}
    assert second.run_ids == first.run_ids
    assert {name: (out / name).read_bytes() for name in FILES} == before  # rewritten identically

    steps = store.runs(kind="pipeline-step")
    assert sorted(steps["run_id"]) == sorted(first.run_ids.values())  # each step recorded once


def test_changing_a_rule_reruns_only_that_step_and_later(tiny, store, tmp_path, tiny_yaml):
    out = tmp_path / "out"
    first = run(tiny_yaml, out, store, tiny)
    changed = tmp_path / "changed.yaml"
    changed.write_text(tiny_yaml.read_text().replace("top_k: 3", "top_k: 2"))
    second = run(changed, out, store, tiny)
    assert second.status == {"capture": "cached", "far": "ran", "masking": "ran", "report": "ran"}
    assert second.run_ids["capture"] == first.run_ids["capture"]
    # the baseline shards of validation did not change, so they were read back, not recomputed
    shards = store.runs(kind="shard")
    assert len(shards) == len(set(shards["run_id"]))
    baseline_shards = [s for s in shards.itertuples() if json.loads(s.spec)["label"] == "baseline"]
    assert len(baseline_shards) == 2


def test_report_shows_step_summaries_as_tables_not_raw_json():
    from workbench.pipeline.report import render_report

    summary = {
        "prompts": 6,
        "conditions": {"baseline": {"success": 1.0}, "selected": {"success": 0.5, "delta_success": -0.5}},
        "top": [[3, 2, 0.91234], [1, 0, 0.5]],
        "selected_minus_control_delta_success": -0.3333333,
    }
    page = render_report("t", "", [{"id": "masking", "kind": "validate", "run_id": "r", "summary": summary, "figures": []}])
    section = page.split("<h2 id='masking'>", 1)[1]
    readable = section.split("<details>", 1)[0]
    assert "<table class='summary'>" in readable and "{" not in readable  # no JSON before the collapsed copy
    assert "<th style='text-align:left'>selected</th><td>0.5</td><td>-0.5</td>" in readable
    assert "(3, 2, 0.9123); (1, 0, 0.5)" in readable and "-0.3333" in readable
    assert "<summary>summary as JSON</summary>" in section
