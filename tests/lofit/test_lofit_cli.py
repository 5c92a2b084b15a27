"""`workbench lofit select|train|eval|fold` end to end on tiny-gqa with the shipped samples."""

import json

import pytest
import torch

from workbench.analyses.lofit import LofitArtifact


def test_select_train_eval_fold(cli, tmp_path):
    result = cli(
        "lofit",
        "select",
        "tiny-gqa",
        "--task",
        "truthfulqa",
        "--steps",
        "2",
        "--limit",
        "6",
        "--out",
        tmp_path / "sel",
    )
    assert result.exit_code == 0, result.output
    heads = json.loads((tmp_path / "sel" / "HEADS.json").read_text())
    assert heads["method"] == "lofit" and len(heads["heads"]) == 8
    assert (tmp_path / "sel" / "scales.safetensors").exists()

    result = cli(
        "lofit",
        "train",
        "tiny-gqa",
        "--task",
        "truthfulqa",
        "--heads",
        tmp_path / "sel" / "HEADS.json",
        "--k",
        "3",
        "--steps",
        "2",
        "--limit",
        "6",
        "--lr",
        "0.1",
        "--out",
        tmp_path / "art",
        "--export-folded",
        tmp_path / "folded",
    )
    assert result.exit_code == 0, result.output
    artifact = LofitArtifact.load(tmp_path / "art")
    top = [(h["layer"], h["head"]) for h in heads["heads"][:3]]
    assert artifact.heads == top and artifact.task == "truthfulqa" and artifact.params["steps"] == 2
    assert (tmp_path / "folded" / "model.safetensors").exists()
    log = json.loads((tmp_path / "art" / "log.json").read_text())
    assert log["steps"] == 2 and len(log["loss"]) == 2

    result = cli(
        "lofit",
        "eval",
        "tiny-gqa",
        "--task",
        "truthfulqa",
        "--limit",
        "4",
        "--lofit",
        tmp_path / "art",
        "--out",
        tmp_path / "e.json",
    )
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "e.json").read_text())
    assert {"mc1", "mc2"} <= set(scored) and scored["n"] == 4 and 0 <= scored["mc2"] <= 1
    result = cli(
        "lofit", "eval", "tiny-gqa", "--task", "truthfulqa", "--limit", "4", "--out", tmp_path / "base"
    )
    base = json.loads((tmp_path / "base" / "eval.json").read_text())
    assert result.exit_code == 0 and base["lofit"] is None and base["mc2"] != scored["mc2"]

    result = cli("lofit", "fold", "tiny-gqa", "--lofit", tmp_path / "art", "--out", tmp_path / "folded2")
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    one, two = (load_file(str(tmp_path / f / "model.safetensors")) for f in ("folded", "folded2"))
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_train_random_heads_on_completions(cli, tmp_path):
    result = cli(
        "lofit",
        "train",
        "tiny-gqa",
        "--task",
        "clutrr",
        "--random",
        "3",
        "--k",
        "2",
        "--steps",
        "1",
        "--limit",
        "8",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 0, result.output
    artifact = LofitArtifact.load(tmp_path / "r")
    assert len(artifact.heads) == 2 and artifact.params["heads_from"] == "random:3"
    result = cli(
        "lofit",
        "eval",
        "tiny-gqa",
        "--task",
        "clutrr",
        "--limit",
        "3",
        "--lofit",
        tmp_path / "r",
        "--out",
        tmp_path / "a.json",
    )
    assert result.exit_code == 0 and set(json.loads((tmp_path / "a.json").read_text())) >= {"accuracy", "n"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "tiny-gqa", "--task", "clutrr"], "--heads"),
        (["eval", "tiny-gqa", "--task", "nope"], "unknown --task"),
        (["eval", "tiny-gqa", "--task", "clutrr", "--data", "/no/such.json"], "does not exist"),
        (["eval", "tiny-gqa", "--task", "clutrr", "--part", "5/2"], "i/n"),
        (["select", "tiny-gqa", "--task", "clutrr", "--limit", "0"], "--limit"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, args, message):
    out = tmp_path / "out"
    result = cli("lofit", *args, "--out", out)
    assert result.exit_code == 2 and message in result.output
    assert not out.exists() and not (tmp_path / "results").exists()
