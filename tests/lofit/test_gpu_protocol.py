"""What benchmarks/lofit_gpu.py adds: the all-heads budget control, batched MC scoring, the SDPA
branch for output-only edits, the fold split, and the driver end to end (--smoke, tiny-gqa)."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

import workbench as wb
from workbench.analyses import lofit
from workbench.analyses.lofit.data import Completion, MCQuestion
from workbench.analyses.lofit.metrics import score_options, score_sequences
from workbench.seam.interventions import HeadOutputAffine

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
QUESTIONS = [
    MCQuestion("Can pigs fly?", "No.", ("No.", "Not on their own."), ("Yes.", "Only at night.")),
    MCQuestion(
        "Is the sky green?", "No, it is blue.", ("No, it is blue.",), ("Yes.", "Always.", "It is red.")
    ),
]


def test_batched_scoring_equals_the_shared_prompt_scoring(tiny_model):
    pairs = [(q.prompt, " " + a) for q in QUESTIONS for a in (*q.correct_answers, *q.incorrect_answers)]
    offsets = [HeadOutputAffine(1, 2, offset=torch.full((tiny_model.shape.head_dim,), 0.5))]
    for interventions in ([], offsets):
        shared = score_options(tiny_model, pairs, interventions)
        batched = score_sequences(tiny_model, pairs, interventions, batch_size=3)
        assert len(set(shared)) > 1
        for a, b in zip(shared, batched, strict=True):
            assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)
    assert lofit.truthfulqa_mc(tiny_model, QUESTIONS, batched=True) == pytest.approx(
        lofit.truthfulqa_mc(tiny_model, QUESTIONS)
    )


def test_output_edits_take_the_sdpa_branch_and_match_the_pytorch_path(tiny_model):
    """The same offsets through the SDPA branch and through the PyTorch path (forced by a capture)."""
    ids = tiny_model.encode("the sdpa branch for head offsets " * 2)
    edits = [
        HeadOutputAffine(
            0,
            1,
            scale=torch.full((16,), 0.3)[: tiny_model.shape.head_dim],
            offset=torch.linspace(-1, 1, tiny_model.shape.head_dim),
        )
    ]
    with torch.no_grad():
        base = tiny_model.logits(ids)
        with wb.instrument(tiny_model.hf, None, edits) as session:
            fast = tiny_model.hf(input_ids=ids, use_cache=False).logits
        assert session.backends[0] == {"sdpa+output-edits"}
        with wb.instrument(tiny_model.hf, wb.CaptureSpec(layers=(0,)), edits) as session:
            slow = tiny_model.hf(input_ids=ids, use_cache=False).logits
        assert session.backends[0] == {"pytorch"}
    assert (fast - base).abs().max() > 1e-2
    assert torch.allclose(fast, slow, atol=1e-5)


def test_shared_budget_trains_budget_coordinates_for_every_head(tiny_model):
    shape = tiny_model.shape
    items = [Completion("The code word is", " zebra")] * 4
    config = lofit.TrainConfig.defaults("clutrr", 2, steps=6, batch_size=2, lr=0.3)
    artifact, log, coordinates = lofit.train_shared_budget(tiny_model, 5, items, config, progress=False)
    assert coordinates.shape == (5,)
    assert artifact.heads == [
        (layer, head) for layer in range(shape.num_layers) for head in range(shape.num_heads)
    ]
    projection = lofit.budget_projection(len(artifact.heads) * shape.head_dim, 5, 0)
    assert torch.allclose(artifact.offsets.flatten(), projection @ coordinates, atol=1e-6)
    assert torch.linalg.matrix_rank(artifact.offsets.flatten()[:, None]) == 1  # spanned, not free
    assert log["loss"][-1] < log["loss"][0]
    assert artifact.params["budget"] == 5
    # the step on each coordinate is scaled so that the whole edit grows as LoFiT's does on its K heads
    scale = (5 / (len(artifact.heads) * shape.head_dim)) ** 0.5
    assert artifact.params["lr_scale"] == pytest.approx(scale)
    assert artifact.params["lr"] == pytest.approx(0.3 * scale)


def test_folds_partition_the_questions():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import lofit_gpu

    if not (DATA / "truthfulqa" / "train.csv").exists():
        pytest.skip("the shared TruthfulQA data is not on this machine")
    folds = lofit_gpu.truthfulqa_folds(DATA)
    ids = [{i for i, _ in fold[name]} for fold in folds for name in ("train", "val", "test")]
    train0, val0, test0, train1, val1, test1 = ids
    assert len(test0 | test1) == 408 and not test0 & test1
    assert train0 | val0 == test1 and not train0 & val0 and len(val0) == round(0.2 * len(test1))
    assert train1 | val1 == test0


def test_driver_smoke_writes_the_layout_the_report_reads(tmp_path, run_driver):
    if not (DATA / "truthfulqa" / "train.csv").exists():
        pytest.skip("the shared TruthfulQA data is not on this machine")
    out = tmp_path / "lofit" / "smoke"
    run_driver("lofit_gpu.py", "--smoke", "--data", DATA, "--out", out)
    result = json.loads((out / "results.json").read_text())
    assert result["finished"] and result["units_expected"] == len(result["units"]) == 8
    conditions = sorted((u["fold"], u["condition"]) for u in result["units"])
    assert conditions == sorted((f, c) for f in (0, 1) for c in ("base", "lofit", "random", "all"))
    for unit in result["units"]:
        assert len(unit["items"]["id"]) == len(unit["items"]["mc2"]) == unit["n"] == 6
    artifact = lofit.LofitArtifact.load(out / "offsets" / "truthfulqa-fold0-seed0-lofit-k2")
    assert len(artifact.heads) == 2
    assert (out / "offsets" / "truthfulqa-fold1-seed0-all-k2" / "coordinates.safetensors").is_file()

    from workbench.report import lofit as lofit_report

    table = lofit_report.table(tmp_path, "truthfulqa")
    assert "| LoFiT heads | 2 | " in table and "| all heads, same budget | 2 |" in table
    assert {e["n"] for e in lofit_report.findings(tmp_path)} == {12}


def test_padded_batches_score_like_one_sequence_at_a_time(tiny_model, monkeypatch):
    """Batched, right-padded scoring equals batch size 1 in float32, also under ACT (a probability edit
    that reads whole columns: the padded batch needs its attention mask, checked by removing it)."""
    from workbench.analyses.calibration import act
    from workbench.analyses.lofit import losses

    pairs = [(q.prompt, " " + a) for q in QUESTIONS for a in (*q.correct_answers, *q.incorrect_answers)]
    calibration = act([(0, 1), (1, 0), (1, 3)], threshold=0.05)
    for interventions in ([], calibration):
        alone = torch.tensor(score_sequences(tiny_model, pairs, interventions, batch_size=1))
        batched = torch.tensor(score_sequences(tiny_model, pairs, interventions, batch_size=len(pairs)))
        assert (batched - alone).abs().max() < 1e-4
    assert (alone - torch.tensor(score_sequences(tiny_model, pairs, [], batch_size=1))).abs().max() > 1e-3
    monkeypatch.setattr(losses, "needs_padding_mask", lambda interventions: False)
    unmasked = torch.tensor(score_sequences(tiny_model, pairs, calibration, batch_size=len(pairs)))
    assert (unmasked - alone).abs().max() > 1e-4  # without the mask the pads would change ACT's rows


def test_merge_keeps_the_newest_unit_of_each_condition(tmp_path):
    """A later run of some conditions (its own units/ file, newer "written") replaces those units only."""
    import json
    import types

    sys.path.insert(0, str(REPO / "benchmarks"))
    import lofit_gpu

    def unit(condition, k, mc1):
        return {"task": "truthfulqa", "fold": 0, "seed": 0, "condition": condition, "k": k, "mc1": mc1}

    (tmp_path / "units").mkdir()
    (tmp_path / "results.json").write_text(json.dumps({"protocol": {"p": 1}, "device": "GPU", "torch": "2.11"}))
    first = {"written": 1.0, "units": [unit("lofit", 8, 0.3), unit("all", 8, 0.25)]}
    later = {"written": 2.0, "units": [unit("all", 8, 0.27)]}
    (tmp_path / "units" / "truthfulqa-fold0-seed0.json").write_text(json.dumps(first))
    (tmp_path / "units" / "truthfulqa-fold0-seed0--all-k8.json").write_text(json.dumps(later))
    result = lofit_gpu.merge(types.SimpleNamespace(out=tmp_path))
    by_condition = {u["condition"]: u["mc1"] for u in result["units"]}
    assert by_condition == {"lofit": 0.3, "all": 0.27}
    assert len(result["units"]) == 2  # the replaced unit is gone, not listed beside its replacement
    assert result["torch"] == "2.11"  # a merge on another machine keeps the run's torch


def test_a_run_without_the_lofit_condition_skips_step_1(tmp_path, run_driver):
    """Random and all-heads runs do not rank heads: no step 1, no heads file, their own units file."""
    if not (DATA / "truthfulqa" / "train.csv").exists():
        pytest.skip("the shared TruthfulQA data is not on this machine")
    out = tmp_path / "random-only"
    done = run_driver("lofit_gpu.py", "--smoke", "--data", DATA, "--conditions", "random",
                      "--jobs", "truthfulqa-fold1-seed0", "--out", out)  # fmt: skip
    assert "step 1" not in done.stdout and not (out / "heads").exists()
    units = json.loads((out / "units" / "truthfulqa-fold1-seed0--random-k2.json").read_text())["units"]
    assert sorted(u["condition"] for u in units) == ["base", "random"]
