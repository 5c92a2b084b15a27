"""A step's key holds the content of the files its options name, not only their paths: an edited
HEADS.json (by hand, or rewritten by an earlier step) reruns the step that reads it and the steps that read
its output, never reads back the result of the old file; an unchanged file reads everything back. Steps
that name no file keep the keys they had before (existing stores keep their cache)."""

import json

import pytest

from workbench.exec import JobSpec, LocalExecutor, Shard, shard_key
from workbench.pipeline import load_pipeline, run_pipeline
from workbench.pipeline.data import load_texts, texts_hash
from workbench.pipeline.options import input_paths
from workbench.pipeline.runner import input_files_hash, step_key
from workbench.store.store import path_hash


def test_keys_of_steps_that_name_no_file_are_unchanged(tiny_yaml):
    # the keys tiny.yaml's steps had before file contents entered the key (computed on the commit before)
    spec = load_pipeline(tiny_yaml)
    data = {name: texts_hash(load_texts(item)) for name, item in spec.data.items()}
    keys = {}
    for config in spec.steps:
        step = spec.implementations[config["id"]]
        assert input_files_hash(step, config, spec) == {}
        data_hash = data[config.get("data", "default")] if step.wants_data(config) else None
        inputs = [keys[i] for i in step.inputs(config)]
        keys[config["id"]] = step_key(spec, config, step.version, data_hash, inputs, "cpu", {})
    assert keys == {"capture": "0002ed9fd1f55010", "far": "17d9b93b592e67df", "masking": "f6472935293ecc6d",
                    "report": "c1c400d22ae312e4"}  # fmt: skip
    assert step_key(spec, spec.steps[0], 1, None, [], "cuda") == "d19a24283c94cc2d"
    job = JobSpec(task="logprob", model="tiny-gqa", params={"window": 48}, label="baseline")
    assert shard_key(job, Shard(0, ("a b c", "d e f"))) == "8a2b63518c01b17c"
    niah = JobSpec(
        task="niah", model="tiny-gqa", params={"haystack": "synthetic", "max_new_tokens": 4}, label="baseline"
    )
    assert shard_key(niah, Shard(0, ("x",))) == "a57fc189d53f5713"  # the built-in haystack is no file


def test_path_hash_is_the_content_of_a_file_or_a_folder(tmp_path):
    assert path_hash(tmp_path / "missing.json") is None
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    one.write_text('{"heads": []}')
    two.write_text('{"heads": []}')
    assert path_hash(one) == path_hash(two)  # the content, not the name
    two.write_text('{"heads": [1]}')
    assert path_hash(one) != path_hash(two)

    folder = tmp_path / "lofit"
    (folder / "sub").mkdir(parents=True)
    (folder / "lofit.json").write_text("{}")
    (folder / "sub" / "a.txt").write_text("a")
    before = path_hash(folder)
    assert before is not None and before != path_hash(folder / "lofit.json")
    (folder / "sub" / "a.txt").write_text("b")
    assert path_hash(folder) != before
    (folder / "sub" / "a.txt").write_text("a")
    assert path_hash(folder) == before
    (folder / "sub" / "a.txt").rename(folder / "sub" / "b.txt")
    assert path_hash(folder) != before  # a renamed file changes the folder


def test_the_options_say_which_fields_are_files_the_step_reads():
    from workbench.pipeline.steps.calibration import ActOptions, EvalTaskOptions
    from workbench.pipeline.steps.lofit import LofitCompareOptions, LofitTrainOptions
    from workbench.pipeline.steps.retrieval import NiahEvalOptions

    train = LofitTrainOptions(model="m", heads="out/HEADS.json", file="data.jsonl", val=None)
    assert input_paths(LofitTrainOptions, train) == {"heads": ["out/HEADS.json"], "file": ["data.jsonl"]}
    assert input_paths(LofitTrainOptions, LofitTrainOptions(model="m", random_seed=1)) == {}
    # the folder lofit-compare writes its units into is an output: not hashed (it changes as the step runs)
    compare = LofitCompareOptions(model="m", out="runs", train="t.jsonl", val="v.jsonl", test="s.jsonl")
    assert input_paths(LofitCompareOptions, compare) == {
        "train": ["t.jsonl"],
        "val": ["v.jsonl"],
        "test": ["s.jsonl"],
    }
    # built-in names are no files; a tuple of files is each file
    assert input_paths(NiahEvalOptions, NiahEvalOptions(model="m")) == {}
    assert input_paths(NiahEvalOptions, {"haystack": "hay.txt", "mask_heads": "H.json"}) == {
        "haystack": ["hay.txt"], "mask_heads": ["H.json"]}  # fmt: skip
    assert input_paths(ActOptions, ActOptions(model="m")) == {}  # task: sentiment, a shipped task
    assert input_paths(ActOptions, ActOptions(model="m", task="mine.jsonl")) == {"task": ["mine.jsonl"]}
    evaluated = EvalTaskOptions(model="m", intervention=("cal.json", "other.json"))
    assert input_paths(EvalTaskOptions, evaluated) == {"intervention": ["cal.json", "other.json"]}
    # the model is named and loaded by workbench.models, never hashed as a file
    assert "model" not in input_paths(LofitTrainOptions, LofitTrainOptions(model="/checkpoints/llama"))


PIPELINE = """\
pipeline: heads-file
model: tiny-gqa
steps:
  - {id: scales, step: lofit, task: truthfulqa, limit: 4, steps: 1, epochs: 1}
  - {id: offsets, step: lofit-train, task: truthfulqa, heads: HEADS.json, k: 2, limit: 4, steps: 1, lr: 0.1}
  - {id: report, step: report}
"""


def _heads(pairs) -> str:
    rows = [
        {"layer": layer, "head": head, "score": 1.0 - 0.1 * rank} for rank, (layer, head) in enumerate(pairs)
    ]
    return json.dumps({"model": "tiny-gqa", "method": "test", "params": {}, "heads": rows})


def test_an_edited_heads_file_reruns_the_step_that_reads_it_and_its_dependents(tiny, store, tmp_path):
    pytest.importorskip("workbench.analyses.lofit")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    heads = tmp_path / "HEADS.json"
    heads.write_text(_heads([(0, 1), (1, 2), (0, 3)]))
    spec = load_pipeline(tmp_path / "pipeline.yaml", out=tmp_path / "out")
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)

    def run():
        return run_pipeline(spec, store=store, executor=executor, echo=lambda m: None)

    first = run()
    assert first.status == {"scales": "ran", "offsets": "ran", "report": "ran"}
    assert first.outputs["offsets"].summary["heads"] == [[0, 1], [1, 2]]

    unchanged = run()
    assert unchanged.status == {"scales": "cached", "offsets": "cached", "report": "cached"}
    assert unchanged.run_ids == first.run_ids

    heads.write_text(_heads([(1, 3), (0, 0), (0, 1)]))  # the same path, other heads
    edited = run()
    assert edited.status == {"scales": "cached", "offsets": "ran", "report": "ran"}
    assert edited.run_ids["scales"] == first.run_ids["scales"]
    assert edited.outputs["offsets"].summary["heads"] == [[1, 3], [0, 0]]  # trained on the new file's heads
    written = json.loads((tmp_path / "out" / "offsets" / "lofit.json").read_text())["heads"]
    assert [[h["layer"], h["head"]] for h in written] == [[1, 3], [0, 0]]  # the files follow
    assert run().status == {"scales": "cached", "offsets": "cached", "report": "cached"}

    heads.write_text(_heads([(0, 1), (1, 2), (0, 3)]))  # back to the first content: the first runs again
    back = run()
    assert back.status == {"scales": "cached", "offsets": "cached", "report": "cached"}
    assert back.run_ids == first.run_ids


def test_heads_rewritten_by_an_earlier_step_rerun_the_step_that_reads_them(tiny, store, tmp_path):
    # lofit -> select (writes out/HEADS.json) -> lofit-train (reads it, declares no input): a changed rule
    # rewrites the file, and the training must follow it
    pytest.importorskip("workbench.analyses.lofit")
    text = """\
pipeline: lofit-heads
model: tiny-gqa
steps:
  - {id: scales, step: lofit, task: truthfulqa, limit: 4, steps: 1, epochs: 1}
  - {id: top, step: select, rule: {of: scales, top_k: 3}}
  - {id: offsets, step: lofit-train, task: truthfulqa, heads: out/HEADS.json, k: 2, limit: 4, steps: 1, lr: 0.1}
"""
    (tmp_path / "pipeline.yaml").write_text(text)
    (tmp_path / "bottom.yaml").write_text(text.replace("top_k: 3", "bottom_k: 3"))
    executor = LocalExecutor(store, progress=False)
    executor.adopt(tiny)

    def run(name):
        spec = load_pipeline(tmp_path / name, out=tmp_path / "out")
        return run_pipeline(spec, store=store, executor=executor, echo=lambda m: None)

    first = run("pipeline.yaml")
    assert first.status == {"scales": "ran", "top": "ran", "offsets": "ran"}
    changed = run("bottom.yaml")
    assert changed.status == {"scales": "cached", "top": "ran", "offsets": "ran"}
    selected = json.loads((tmp_path / "out" / "HEADS.json").read_text())["heads"]
    assert changed.outputs["offsets"].summary["heads"] == [[h["layer"], h["head"]] for h in selected[:2]]
    assert changed.outputs["offsets"].summary["heads"] != first.outputs["offsets"].summary["heads"]
    assert run("bottom.yaml").status == {"scales": "cached", "top": "cached", "offsets": "cached"}


def test_a_sweep_shard_of_a_step_reading_a_file_follows_the_file(tiny, store, tmp_path):
    from workbench.exec.tasks import run_shard

    text = tmp_path / "essay.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 8)
    job = JobSpec(task="step", model="tiny-gqa",
                  params={"step": "sinks", "options": {"text": str(text), "window": 16, "max_windows": 2}})  # fmt: skip
    shard = Shard(0, ("unused: the step reads its text option",))
    first = run_shard(tiny, job, shard, store)
    assert not first.cached and run_shard(tiny, job, shard, store).cached

    text.write_text("Attention sinks gather mass on the first token of every window. " * 8)
    edited = run_shard(tiny, job, shard, store)
    assert not edited.cached and edited.key != first.key
    assert edited.frame["run_id"][0] != first.frame["run_id"][0]  # the Step ran on the new text

    hay = tmp_path / "hay.txt"
    hay.write_text("grass " * 50)
    niah = JobSpec(task="niah", model="tiny-gqa", params={"haystack": str(hay), "max_new_tokens": 4})
    before = shard_key(niah, shard)
    hay.write_text("straw " * 50)
    assert shard_key(niah, shard) != before


def test_validate_names_its_niah_files(write_yaml, tmp_path):
    (tmp_path / "hay.txt").write_text("grass " * 50)
    path = write_yaml("""\
pipeline: niah-files
model: tiny-gqa
data: {source: sample}
steps:
  - {id: capture, step: capture, window: 32}
  - {id: pick, step: select, rule: {of: capture, top_k: 2}}
  - {id: niah, step: validate, heads: pick, metric: niah, niah: {haystack: hay.txt, lengths: [240], depths: [50]}}
""")
    spec = load_pipeline(path)
    step, config = spec.implementations["niah"], spec.step("niah")
    assert step.input_files(config, spec) == {"niah.haystack": [str(tmp_path / "hay.txt")]}
    before = input_files_hash(step, config, spec)
    (tmp_path / "hay.txt").write_text("straw " * 50)
    assert input_files_hash(step, config, spec) != before
    assert input_files_hash(spec.implementations["capture"], spec.step("capture"), spec) == {}


def test_the_calibration_steps_know_load_tasks_built_in_names():
    """A name in this list is not hashed as a file; one missing from it would be looked up as a file."""
    from workbench.analyses.calibration.tasks import NAMED_TASKS as loader_names
    from workbench.pipeline.steps.calibration import NAMED_TASKS as step_names

    assert step_names == loader_names
