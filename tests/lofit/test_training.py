"""Losses, gradients through the seam, step 1 selection and step 2 offsets on tiny-gqa."""

import math

import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.analyses import lofit
from workbench.analyses.lofit.data import Completion, MCQuestion
from workbench.analyses.lofit.losses import (
    completion_loss,
    dpo_loss,
    encode_pair,
    make_batch,
    pad_id,
    sequence_logprobs,
)
from workbench.seam.spec import SpecError

PAIRS = [("Q: one?\nA:", " yes."), ("Q: a longer question here?\nA:", " no, never."), ("Hi", " x")]


def _reference_logprob(model, prompt, target):
    p, t = encode_pair(model, prompt, target, max_prompt=128, max_target=128)
    ids = torch.tensor([p + t])
    logits = model.logits(ids)[0].double()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[len(p) + i - 1, token] for i, token in enumerate(t)))


def test_padded_batch_logprobs_match_one_sequence_at_a_time(tiny_model):
    batch = make_batch(
        [encode_pair(tiny_model, p, t, max_prompt=128, max_target=128) for p, t in PAIRS], pad_id(tiny_model)
    )
    with torch.no_grad():
        logp, counts = sequence_logprobs(tiny_model, batch)
    for index, (prompt, target) in enumerate(PAIRS):
        assert math.isclose(
            float(logp[index]), _reference_logprob(tiny_model, prompt, target), rel_tol=1e-4, abs_tol=1e-3
        )
    assert counts.tolist() == [len(t.encode()) for _, t in PAIRS]  # byte tokenizer: one token per byte


def test_dpo_loss_values():
    zero = torch.zeros(3)
    loss, accuracy = dpo_loss(zero, zero, zero, zero, beta=0.5)
    assert math.isclose(float(loss), math.log(2), rel_tol=1e-6) and float(accuracy) == 0.0
    loss, accuracy = dpo_loss(
        torch.tensor([2.0]), torch.tensor([-2.0]), torch.zeros(1), torch.zeros(1), beta=0.5
    )
    assert (
        math.isclose(float(loss), -math.log(1 / (1 + math.exp(-2.0))), rel_tol=1e-6)
        and float(accuracy) == 1.0
    )


def test_completion_loss_is_cross_entropy_on_completion_tokens_only(tiny_model):
    pairs = [encode_pair(tiny_model, p, t, max_prompt=128, max_target=128) for p, t in PAIRS[:2]]
    batch = make_batch(pairs, pad_id(tiny_model))
    with torch.no_grad():
        loss = completion_loss(tiny_model, batch)
    total = sum(-_reference_logprob(tiny_model, p, t) for p, t in PAIRS[:2])
    count = sum(len(t) for _, t in pairs)
    assert math.isclose(float(loss), total / count, rel_tol=1e-4)


def test_gradient_reaches_offsets_through_the_seam_and_not_the_weights(tiny_model):
    tiny_model.hf.requires_grad_(False)
    offset = torch.nn.Parameter(torch.zeros(tiny_model.shape.head_dim))
    batch = make_batch(
        [encode_pair(tiny_model, *PAIRS[0], max_prompt=128, max_target=128)], pad_id(tiny_model)
    )
    loss = completion_loss(tiny_model, batch, [wb.HeadOutputAffine(1, 2, offset=offset)])
    loss.backward()
    assert offset.grad is not None and offset.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_model.hf.parameters())


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.hf.parameters()]).clone()


def test_select_heads_table_and_frozen_model(tiny_model):
    questions = lofit.load_task("truthfulqa", lofit.sample_path("truthfulqa"), limit=6)
    before = _weights(tiny_model)
    config = lofit.TrainConfig.defaults("truthfulqa", 1, steps=3, batch_size=4)
    table, scales, log = lofit.select_heads(tiny_model, questions, config, progress=False)
    shape = tiny_model.shape
    assert len(table) == shape.num_layers * shape.num_heads and list(table.columns[:3]) == [
        "layer",
        "head",
        "kv_head",
    ]
    assert table["score"].is_monotonic_decreasing and table.attrs["method"] == "lofit"
    layers, heads = table["layer"].tolist(), table["head"].tolist()
    assert torch.allclose(torch.tensor(table["score"].tolist()), scales[layers, heads].norm(dim=-1))
    # the scales moved away from their 1e-3 initialisation: the loss and L1 reached them
    init = torch.randn(scales.shape, generator=torch.Generator().manual_seed(0)) * 1e-3
    assert (scales - init).abs().max() > 1e-3
    assert len(log["loss"]) == 3
    assert torch.equal(before, _weights(tiny_model))


def test_offsets_learn_a_completion_and_validation_picks_the_best(tiny_model):
    items = [Completion("The code word is", " zebra")] * 8
    before = _weights(tiny_model)
    heads = [(layer, head) for layer in range(2) for head in range(4)]
    config = lofit.TrainConfig.defaults("clutrr", 2, steps=12, batch_size=4, lr=0.3, eval_every=4)
    artifact, log = lofit.train_offsets(tiny_model, heads, items, config, val_items=items[:2], progress=False)
    assert len(log["loss"]) == 10  # 5 epochs x 2 batches, under the cap of 12
    assert log["loss"][-1] < 0.95 * log["loss"][0]
    assert [v["step"] for v in log["val"]] == [0, 4, 8, 10]
    best = min(log["val"], key=lambda v: v["loss"])
    assert artifact.params["selected_step"] == best["step"] != 0
    assert artifact.heads == heads and artifact.offsets.shape == (8, tiny_model.shape.head_dim)
    assert torch.equal(before, _weights(tiny_model))
    # the returned offsets are the selected ones: their validation loss is the best one logged
    batch = make_batch(
        [
            encode_pair(tiny_model, i.prompt, i.completion, max_prompt=384, max_target=16, eos=True)
            for i in items[:2]
        ],
        pad_id(tiny_model),
    )
    with torch.no_grad():
        value = float(completion_loss(tiny_model, batch, artifact.interventions()))
    assert math.isclose(value, best["loss"], rel_tol=1e-4)


def test_dpo_training_prefers_chosen_answers(tiny_model):
    question = MCQuestion("Pick", "aaa.", ("aaa.",), ("bbb.",))
    config = lofit.TrainConfig.defaults("truthfulqa", 2, steps=12, batch_size=1, lr=0.1)
    artifact, log = lofit.train_offsets(tiny_model, [(1, 0), (1, 1)], [question], config, progress=False)
    assert log["loss"][-1] < log["loss"][0] - 0.05
    before = lofit.truthfulqa_mc(tiny_model, [question])
    after = lofit.truthfulqa_mc(tiny_model, [question], artifact.interventions())
    assert after["mc2"] > before["mc2"] and after["mc1"] == 1.0


def test_random_heads_and_bad_heads(tiny_model):
    heads = lofit.random_heads(tiny_model, 3, seed=5)
    assert heads == lofit.random_heads(tiny_model, 3, seed=5) and len(set(heads)) == 3
    assert (
        lofit.random_heads(tiny_model, 3, seed=6) != heads
        or lofit.random_heads(tiny_model, 3, seed=7) != heads
    )
    with pytest.raises(SpecError, match="K must be"):
        lofit.random_heads(tiny_model, 99, seed=0)
    with pytest.raises(SpecError, match="outside"):
        lofit.train_offsets(
            tiny_model, [(5, 0)], [Completion("a", " b")], lofit.TrainConfig.defaults("clutrr", 2, steps=1)
        )


def test_interrupted_training_continues_from_its_checkpoint(tiny, tmp_path, monkeypatch):
    """Training killed after 3 of 6 steps continues from the saved step (no step redone) and ends with
    the same scales and log as an uninterrupted run."""
    import torch

    from workbench.analyses import lofit
    from workbench.analyses.lofit import train as train_module
    from workbench.checkpoint import TrainingCheckpoint

    items = lofit.load_task("truthfulqa", lofit.sample_path("truthfulqa"), limit=4)
    config = lofit.TrainConfig.defaults("truthfulqa", 1, steps=6, epochs=3, batch_size=3)
    reference_table, reference_scales, reference_log = lofit.select_heads(tiny, items, config, progress=False)

    class Killed(Exception):
        pass

    calls = {"n": 0}
    real_task_loss = train_module.task_loss

    def dying_task_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Killed
        return real_task_loss(*args, **kwargs)

    checkpoint = TrainingCheckpoint(tmp_path / "work" / "lofit.safetensors")
    monkeypatch.setattr(train_module, "task_loss", dying_task_loss)
    with pytest.raises(Killed):
        lofit.select_heads(tiny, items, config, progress=False, checkpoint=checkpoint)
    state, _ = checkpoint.load()
    assert state["step"] == 3

    calls["n"] = -100  # no more deaths; count the steps the rerun trains
    table, scales, log = lofit.select_heads(tiny, items, config, progress=False, checkpoint=checkpoint)
    assert calls["n"] == -100 + 3  # only the 3 unfinished steps ran
    torch.testing.assert_close(scales, reference_scales, rtol=0, atol=0)
    assert log["loss"] == reference_log["loss"] and log["metric"] == reference_log["metric"]
    pd.testing.assert_frame_equal(table, reference_table)
