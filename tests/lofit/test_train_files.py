"""The lofit-train record holds its artifact: a pipeline writes the files `lofit train` writes, again
(byte for byte) when the step is read back from the store, and the command writes them through the same
code (``write_train_files``)."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from workbench.analyses.lofit import LofitArtifact
from workbench.cli import app
from workbench.exec import LocalExecutor
from workbench.pipeline import load_pipeline, run_pipeline
from workbench.pipeline.runner import load_output
from workbench.pipeline.steps.lofit import LofitTrainOptions, train_artifact, write_train_files
from workbench.seam.interventions import interventions_from_json, interventions_to_json

FILES = {"lofit.safetensors", "lofit.json", "log.json"}

PIPELINE = """\
pipeline: lofit-files
model: tiny-gqa
steps:
  - {id: scales, step: lofit, task: truthfulqa, limit: 4, steps: 2, epochs: 1}
  - {id: top, step: select, rule: {of: scales, top_k: 3}}
  - {id: offsets, step: lofit-train, task: truthfulqa, heads: out/HEADS.json, k: 2, limit: 4, steps: 2, lr: 0.1}
"""


def _bytes(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_pipeline_writes_the_artifact_and_a_cached_step_writes_the_same_bytes(tiny, store, tmp_path, monkeypatch):
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    spec = load_pipeline(tmp_path / "pipeline.yaml", out=tmp_path / "out")
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)
    first = run_pipeline(spec, store=store, executor=executor, echo=lambda m: None)
    assert first.status == {"scales": "ran", "top": "ran", "offsets": "ran"}

    folder = tmp_path / "out" / "offsets"
    assert {p.name for p in folder.iterdir()} == FILES
    assert {p for p in first.files if p.parent == folder} == {folder / name for name in FILES}
    artifact = LofitArtifact.load(folder)
    selected = json.loads((tmp_path / "out" / "HEADS.json").read_text())["heads"]
    assert artifact.heads == [(h["layer"], h["head"]) for h in selected[:2]]
    assert artifact.task == "truthfulqa" and artifact.params["steps"] == 2 and artifact.offsets.abs().sum() > 0
    assert json.loads((folder / "log.json").read_text())["steps"] == 2
    frame = store.array(first.run_ids["offsets"], "offsets")
    assert list(frame.columns) == ["rank", "layer", "head", "kv_head", "offset"]
    assert list(frame["kv_head"]) == [head // 2 for _, head in artifact.heads]  # tiny-gqa: 4 heads, 2 kv heads
    written = _bytes(folder)

    # resumed: every step read back from the store, nothing trained, the same bytes written again
    from workbench.analyses.lofit import train as train_module

    def refuse(*args, **kwargs):
        raise AssertionError("a cached step must not train")

    monkeypatch.setattr(train_module, "optimise", refuse)
    shutil.rmtree(folder)
    again = run_pipeline(spec, store=store, executor=executor, echo=lambda m: None)
    assert again.status == {"scales": "cached", "top": "cached", "offsets": "cached"}
    assert _bytes(folder) == written

    # the folder is an artifact like the command's: its interventions are data, and `lofit eval` reads it
    ids = tiny.encode("The capital of France is", chat=False)
    loaded = interventions_from_json(interventions_to_json(LofitArtifact.load(folder).interventions()))
    assert torch.equal(tiny.logits(ids, loaded), tiny.logits(ids, artifact.interventions()))
    assert not torch.equal(tiny.logits(ids, loaded), tiny.logits(ids))
    result = CliRunner().invoke(app, ["lofit", "eval", "tiny-gqa", "--task", "truthfulqa", "--limit", "3",
                                      "--lofit", str(folder), "--out", str(tmp_path / "eval.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "eval.json").read_text())
    assert scored["lofit"] == str(folder) and scored["n"] == 3 and 0 <= scored["mc2"] <= 1


def test_lofit_train_command_writes_the_same_files_as_before(store, tmp_path):
    from workbench.analyses.lofit import TrainConfig, random_heads, train_offsets
    from workbench.jsonfiles import write_json
    from workbench.store import Store

    result = CliRunner().invoke(app, ["lofit", "train", "tiny-gqa", "--task", "clutrr", "--random", "3", "--k", "2",
                                      "--steps", "1", "--limit", "8", "--out", str(tmp_path / "cli")])  # fmt: skip
    assert result.exit_code == 0, result.output
    command = _bytes(tmp_path / "cli")
    assert set(command) == FILES

    # what the command wrote before the artifact was part of the record: the trained artifact saved as it is
    import workbench as wb

    model = wb.load_model("tiny-gqa")
    options = LofitTrainOptions(model="tiny-gqa", task="clutrr", random_seed=3, k=2, steps=1, limit=8)
    config = TrainConfig.defaults("clutrr", 2, epochs=None, steps=1, batch_size=None, lr=None, seed=None,
                                  eval_every=None)  # fmt: skip
    artifact, log = train_offsets(model, random_heads(model, 2, 3), options.items()[1], config, progress=False,
                                  extra_params={"heads_from": "random:3"})  # fmt: skip
    artifact.save(tmp_path / "before")
    write_json(tmp_path / "before" / "log.json", log)
    assert _bytes(tmp_path / "before") == command

    # the command's store run holds the artifact too: rebuilt from it, the same files again
    run_id = result.output.strip().rsplit("run ", 1)[1]
    output = load_output(Store(tmp_path / "results"), run_id)
    assert torch.equal(train_artifact(output).offsets, artifact.offsets)
    write_train_files(tmp_path / "record", output)
    assert _bytes(tmp_path / "record") == command


def test_a_record_that_names_other_heads_than_its_offsets_is_refused():
    from workbench.seam.spec import SpecError

    artifact = LofitArtifact("tiny-gqa", "clutrr", [(0, 1), (1, 2)], torch.randn(2, 8))
    frame = artifact.to_frame()
    rebuilt = LofitArtifact.from_record(artifact.to_json(), frame.iloc[::-1])  # rows in any order: by rank
    assert rebuilt.heads == artifact.heads and torch.equal(rebuilt.offsets, artifact.offsets)
    with pytest.raises(SpecError, match="offsets table holds heads"):
        LofitArtifact.from_record(artifact.to_json(), frame.head(1))
