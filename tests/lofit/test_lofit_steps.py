"""`lofit compare` and `lofit fold` are Steps (lofit-compare, lofit-fold): defaults typed once in their
options, validated before any work, one run recorded by the pipeline runner; the commands are thin."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from workbench.analyses import lofit
from workbench.analyses.lofit import LofitArtifact
from workbench.pipeline.options import OptionError, from_config
from workbench.pipeline.registry import load_step
from workbench.pipeline.steps.lofit import LofitCompareOptions, LofitFoldOptions
from workbench.seam.spec import SpecError

SAMPLE = lofit.sample_path("clutrr")
# a small comparison on tiny-gqa (2 layers x 4 heads): 1 base + 2 conditions x 1 K x 1 seed
SMALL = ["--task", "clutrr", "--train", SAMPLE, "--val", SAMPLE, "--test", SAMPLE, "--train-part", "1/2",
         "--val-part", "2/2", "--test-part", "2/2", "--train-limit", "4", "--val-limit", "2",
         "--test-limit", "3", "--ks", "2", "--seeds", "0", "--select-steps", "1", "--train-steps", "1",
         "--batch-size", "2", "--device", "cpu", "--dtype", "float32"]  # fmt: skip


def test_compare_options_hold_the_defaults_and_need_the_data():
    with pytest.raises(TypeError, match="out"):
        LofitCompareOptions(train=SAMPLE, val=SAMPLE, test=SAMPLE)  # out, train, val, test have no default
    options = LofitCompareOptions(out="o", train=SAMPLE, val=SAMPLE, test=SAMPLE)
    assert (options.ks, options.seeds, options.batch_size, options.task) == ((8, 27), (0, 1), 8, "truthfulqa")
    assert options.lr is None and options.select_steps is None  # None: TrainConfig's default for the task
    # the analysis's plan types no default of its own: the Step's options are the one place
    from workbench.analyses.lofit.compare import ComparisonPlan

    plan_defaults = {
        f.name for f in dataclasses.fields(ComparisonPlan) if f.default is not dataclasses.MISSING
    }
    assert not plan_defaults & {"ks", "seeds", "batch_size"}
    with pytest.raises(TypeError, match="lofit"):
        LofitFoldOptions()


def test_compare_options_from_a_pipeline_config(tmp_path):
    config = {
        "task": "clutrr",
        "out": "cmp",
        "train": "t.jsonl",
        "val": "v.jsonl",
        "test": "x.jsonl",
        "ks": [2, 4],
    }
    options = from_config(LofitCompareOptions, config, where="step 'c'", base=tmp_path)
    assert options.out == tmp_path / "cmp" and options.train == tmp_path / "t.jsonl" and options.ks == (2, 4)
    with pytest.raises(OptionError, match=r"needs option\(s\) \['out', 'train', 'val', 'test'\]"):
        from_config(LofitCompareOptions, {"task": "clutrr"}, where="step 'c'")
    with pytest.raises(OptionError, match="'ks' must be a list of integers"):
        from_config(
            LofitCompareOptions, {"out": "o", "train": "t", "val": "v", "test": "x", "ks": "8"}, where="s"
        )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"task": "nope"}, "unknown --task 'nope'"),
        ({"train": "/no/such.jsonl"}, "--train /no/such.jsonl does not exist"),
        ({"retrieval_heads": "/no/HEADS.json"}, "--retrieval-heads /no/HEADS.json does not exist"),
        ({"val_part": "5/2"}, "i/n"),
        ({"ks": ()}, "--ks and --seeds"),
        ({"seeds": ()}, "--ks and --seeds"),
        ({"ks": (2, 0)}, "--ks values must be at least 1"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"test_limit": 0}, "--test-limit must be at least 1"),
        ({"train_steps": 0}, "--train-steps must be at least 1"),
    ],
)
def test_compare_validation_names_the_option(tmp_path, changes, message):
    options = LofitCompareOptions(task="clutrr", out=tmp_path / "o", train=SAMPLE, val=SAMPLE, test=SAMPLE)
    step = load_step("lofit-compare")
    step.validate_options(options)
    with pytest.raises(SpecError, match=message):  # OptionError, or parse_part's SpecError
        step.validate_options(dataclasses.replace(options, **changes))


def test_compare_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "o").write_text("")
    options = LofitCompareOptions(task="clutrr", out=tmp_path / "o", train=SAMPLE, val=SAMPLE, test=SAMPLE)
    with pytest.raises(OptionError, match="exists and is not a folder"):
        load_step("lofit-compare").validate_options(options)


def test_compare_command_records_one_run_and_resumes(cli, tmp_path, put_runs, monkeypatch):
    from workbench.store import Store

    out = tmp_path / "cmp"
    result = cli("lofit", "compare", "tiny-gqa", *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    assert put_runs == [("lofit_compare", "workbench.pipeline.runner", "write_run")]
    runs = Store(tmp_path / "results").runs()
    assert runs["kind"].tolist() == ["lofit_compare"]
    assert (runs["device"].tolist(), runs["dtype"].tolist()) == (["cpu"], ["float32"])
    run_id = runs["run_id"].iloc[0]
    assert result.output.strip().endswith("| random | 2 | 32 | 1 | " + _accuracy(out, "random-k2") + " |")
    assert f"run {run_id}" in result.output
    units = ("seed0/select/HEADS.json", "seed0/lofit-k2/lofit.json", "seed0/random-k2/eval.json")
    for name in ("base.json", "plan.json", "results.csv", "summary.csv", "summary.md", *units):
        assert (out / name).is_file(), name
    plan = json.loads((out / "plan.json").read_text())
    assert plan["ks"] == [2] and plan["batch_size"] == 2 and plan["train"]["part"] == [1, 2]
    store = Store(tmp_path / "results")
    results = store.array(run_id, "results")
    assert results["condition"].tolist() == ["base", "lofit", "random"]
    summary = store.summary(run_id)
    assert summary["out"] == str(out) and [c["condition"] for c in summary["conditions"]] == [
        "base",
        "lofit",
        "random",
    ]

    # a rerun finds every unit on disk: no selection or training runs, and the same record is found again
    import workbench.analyses.lofit.compare as compare_module

    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr(compare_module, "select_heads", refuse)
    monkeypatch.setattr(compare_module, "train_offsets", refuse)
    again = cli("lofit", "compare", "tiny-gqa", *SMALL, "--out", out)
    assert again.exit_code == 0, again.output
    assert f"run {run_id}" in again.output and len(Store(tmp_path / "results").runs()) == 1

    # a rerun with another training setting would reuse units trained under the old one: refused, one line,
    # before the model loads, and the folder is left as it was
    plan_before = (out / "plan.json").read_text()
    changed = list(SMALL)
    changed[changed.index("--train-steps") + 1] = "2"
    refused = cli("lofit", "compare", "tiny-gqa", *changed, "--out", out)
    assert refused.exit_code == 2, refused.output
    assert "holds a comparison run with other settings (train_steps differ" in refused.output
    assert (out / "plan.json").read_text() == plan_before and len(Store(tmp_path / "results").runs()) == 1


def _accuracy(out, unit: str) -> str:
    return f"{json.loads((out / 'seed0' / unit / 'eval.json').read_text())['accuracy']:.3f}"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--ks", "9"],
            "--ks 9 is more heads than tiny-gqa has (2 layers x 4 heads = 8)",
        ),  # after the model loads
        (["--ks", "a,b"], "--ks expects comma-separated integers"),
        (["--seeds", ""], "--ks and --seeds each need at least one value"),
        (["--train", "/no/such.jsonl"], "--train /no/such.jsonl does not exist"),
    ],
)
def test_compare_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, put_runs, args, message):
    out = tmp_path / "cmp"
    result = cli("lofit", "compare", "tiny-gqa", *SMALL, *args, "--out", out)
    assert result.exit_code == 2 and message in result.output, result.output
    assert put_runs == [] and not out.exists() and not (tmp_path / "results").exists()


def test_fold_command_records_one_run_and_writes_the_folded_checkpoint(cli, tmp_path, put_runs, tiny_model):
    heads = [(0, 1), (1, 3), (1, 0)]
    offsets = torch.randn(len(heads), tiny_model.shape.head_dim, generator=torch.Generator().manual_seed(0))
    shape = {"num_layers": 2, "num_heads": 4, "head_dim": tiny_model.shape.head_dim}
    artifact = LofitArtifact("tiny-gqa", "clutrr", heads, offsets, shape, {"lr": 0.01})
    artifact.save(tmp_path / "art")
    result = cli("lofit", "fold", "tiny-gqa", "--lofit", tmp_path / "art", "--out", tmp_path / "folded",
                 "--device", "cpu", "--dtype", "float32")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 heads folded into o_proj biases" in result.output
    assert put_runs == [("lofit_fold", "workbench.pipeline.runner", "write_run")]
    from workbench.store import Store

    store = Store(tmp_path / "results")
    runs = store.runs()
    assert runs["kind"].tolist() == ["lofit_fold"] and runs["device"].tolist() == ["cpu"]
    summary = store.summary(runs["run_id"].iloc[0])
    biases = lofit.folded_biases(tiny_model, artifact)
    assert summary["heads"] == [list(h) for h in heads] and summary["task"] == "clutrr"
    assert summary["bias_norm"] == pytest.approx({str(k): float(v.norm()) for k, v in biases.items()})
    # the same checkpoint as the library's one-call export
    lofit.export_folded(tiny_model, artifact, tmp_path / "reference")
    one, two = (load_file(str(tmp_path / f / "model.safetensors")) for f in ("folded", "reference"))
    assert set(one) == set(two) and all(torch.equal(one[k], two[k]) for k in one)
    assert (tmp_path / "folded" / "config.json").is_file() and (
        tmp_path / "folded" / "tokenizer.json"
    ).is_file()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda path: None, "is not a folder"),
        (lambda path: path.mkdir(), "lofit.json is missing"),
    ],
)
def test_fold_bad_artifact_is_one_line_and_writes_nothing(cli, tmp_path, put_runs, make, message):
    make(tmp_path / "art")
    result = cli("lofit", "fold", "tiny-gqa", "--lofit", tmp_path / "art", "--out", tmp_path / "folded")
    assert result.exit_code == 2 and message in result.output, result.output
    assert put_runs == [] and not (tmp_path / "folded").exists() and not (tmp_path / "results").exists()
