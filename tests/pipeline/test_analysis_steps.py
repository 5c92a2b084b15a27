"""The analysis steps (sinks, retrieval, rhythm) and the NIAH validation metric, on tiny-gqa."""

import numpy as np
import pandas as pd
import pytest

from workbench.exec import LocalExecutor
from workbench.pipeline import load_pipeline, run_pipeline

PIPELINE = """\
pipeline: analyses
model: tiny-gqa
data: {source: sample}
steps:
  - {id: sinks, step: sinks, window: 32, max_windows: 4}
  - {id: retrieval, step: retrieval, lengths: [240], depths: [50], max_new_tokens: 4}
  - {id: rhythm, step: rhythm, limit: 3, max_new_tokens: 12}
  - id: pick
    step: select
    rule:
      union:
        - {of: sinks, bottom_k: 2}
        - {of: rhythm, by: mean_distance, top_k: 1}
  - id: niah
    step: validate
    heads: pick
    metric: niah
    controls: 1
    niah: {lengths: [240], depths: [50], max_new_tokens: 4}
  - {id: report, step: report}
"""


@pytest.mark.parametrize("missing", ["sinks", "retrieval", "rhythm", "niah"])
def test_analysis_steps_are_registered(missing, write_yaml):
    spec = load_pipeline(write_yaml(PIPELINE))
    assert spec.implementations[missing].kind == ("validate" if missing == "niah" else missing)


def test_analysis_steps_run_and_match_the_analyses(tiny, store, tmp_path, write_yaml):
    from workbench.analyses.demo import sample_text
    from workbench.analyses.sinks import sinks_report

    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    spec = load_pipeline(write_yaml(PIPELINE), out=tmp_path / "out")
    result = run_pipeline(spec, store=store, executor=executor, echo=lambda m: None)

    _, tables = sinks_report(tiny, sample_text(), window=32, max_windows=4)
    got = result.outputs["sinks"].table("heads").sort_values(["layer", "head"])["score"].to_numpy()
    want = tables["heads"].sort_values(["layer", "head"])["score"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)

    retrieval = result.outputs["retrieval"]
    assert len(retrieval.table("heads")) == 8 and retrieval.summary["num_runs"] == 3  # 3 pass keys x 1 x 1
    assert len(result.outputs["rhythm"].table("heads")) == 8

    pick = {tuple(p) for p in result.outputs["pick"].summary["heads"]}
    sinks = result.outputs["sinks"].table("heads").sort_values(["score", "layer", "head"]).head(2)
    rhythm = result.outputs["rhythm"].table("heads").sort_values("mean_distance", ascending=False).head(1)
    expected = {(int(r.layer), int(r.head)) for r in [*sinks.itertuples(), *rhythm.itertuples()]}
    assert pick == expected

    niah = result.outputs["niah"]
    per_prompt = niah.table("per_prompt")
    assert set(per_prompt["label"]) == {"baseline", "selected", "control-0"}
    assert len(per_prompt) == 3 * 3  # held-out pass keys x conditions
    assert set(niah.summary["conditions"]["selected"]) >= {"success", "rouge_recall", "delta_success"}
    assert (tmp_path / "out" / "report.html").exists()


def test_lofit_step_ranks_heads_by_learned_scale(tiny, store, tmp_path, write_yaml):
    pytest.importorskip("workbench.analyses.lofit")
    text = """\
pipeline: lofit
model: tiny-gqa
steps:
  - {id: lofit, step: lofit, task: truthfulqa, limit: 4, steps: 2, epochs: 1}
  - {id: top, step: select, rule: {of: lofit, top_k: 3}}
"""
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    result = run_pipeline(load_pipeline(write_yaml(text), out=tmp_path / "out"), store=store, executor=executor,
                          echo=lambda m: None)  # fmt: skip
    table = result.outputs["lofit"].table("heads")
    assert len(table) == 8 and (table["score"] > 0).all()
    assert list(table["score"]) == sorted(table["score"], reverse=True)
    top = [(int(r.layer), int(r.head)) for r in table.head(3).itertuples()]
    assert [tuple(h) for h in result.outputs["top"].summary["heads"]] == top


@pytest.mark.slow
def test_binding_step_on_a_tiny_vit(store, tmp_path, write_yaml):
    pytest.importorskip("workbench.analyses.binding")
    from workbench.models.registry import known_models

    if "tiny-vit-dino-s0" not in {m.name for m in known_models()}:
        pytest.skip("tiny ViT checkpoints not present")
    text = """\
pipeline: binding
model: tiny-vit-dino-s0
steps:
  - {id: binding, step: binding, scenes: 8, epochs: 1, layers: [3], head_scenes: 2, ranks: [], baselines: false}
  - {id: top, step: select, rule: {of: binding, by: binding_auroc, top_k: 2}}
"""
    result = run_pipeline(
        load_pipeline(write_yaml(text), out=tmp_path / "out"), store=store, echo=lambda m: None
    )
    heads = result.outputs["binding"].table("heads")
    assert len(heads) == 6 * 3 and heads["binding_auroc"].between(0, 1).all()  # 6 blocks x 3 heads
    assert result.outputs["top"].summary["count"] == 2


def test_interrupted_lofit_step_continues_its_training(tiny, store, tmp_path, write_yaml, monkeypatch):
    pytest.importorskip("workbench.analyses.lofit")
    from workbench.analyses.lofit import train as train_module

    text = """\
pipeline: lofit
model: tiny-gqa
steps:
  - {id: lofit, step: lofit, task: truthfulqa, limit: 4, epochs: 4}
"""
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    reference = run_pipeline(load_pipeline(write_yaml(text), out=tmp_path / "reference"), store=store,
                             executor=executor, echo=lambda m: None)  # fmt: skip

    class Killed(Exception):
        pass

    calls = {"n": 0}
    real = train_module.task_loss

    def counting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls.get("die_at"):
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "task_loss", counting)
    other = type(store)(tmp_path / "other-store")
    executor = LocalExecutor(other, progress=False)
    executor.adopt(tiny)
    spec = load_pipeline(write_yaml(text), out=tmp_path / "out")
    calls["die_at"] = 3
    with pytest.raises(Killed):
        run_pipeline(spec, store=other, executor=executor, echo=lambda m: None)
    assert len(list((tmp_path / "out" / ".work").glob("lofit-*.safetensors"))) == 1
    calls.update(n=0, die_at=None)
    messages = []
    result = run_pipeline(spec, store=other, executor=executor, echo=messages.append)
    assert calls["n"] == 2  # steps 3 and 4 only
    assert any("continuing from its saved training state" in m for m in messages), messages
    assert not list((tmp_path / "out" / ".work").iterdir())
    pd.testing.assert_frame_equal(result.outputs["lofit"].table("heads"), reference.outputs["lofit"].table("heads"))
