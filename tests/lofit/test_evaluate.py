"""MC1/MC2 and exact-answer accuracy against hand computations."""

import math

import pytest
import torch

from workbench.analyses import lofit
from workbench.analyses.lofit import metrics as evaluate_module
from workbench.analyses.lofit.data import Completion, MCQuestion
from workbench.analyses.lofit.losses import encode_pair, make_batch, pad_id, sequence_logprobs
from workbench.analyses.lofit.metrics import score_options


def test_mc_metrics_by_hand():
    mc1, mc2 = lofit.mc_metrics(-1.0, [-1.0, -3.0], [-2.0, -4.0])
    assert mc1 == 1.0
    true, false = math.exp(-1) + math.exp(-3), math.exp(-2) + math.exp(-4)
    assert math.isclose(mc2, true / (true + false), rel_tol=1e-12)
    assert lofit.mc_metrics(-2.0, [-2.0], [-2.0])[0] == 0.0  # a tie is not a win


def test_shared_prompt_scores_equal_full_sequence_scores(tiny_model):
    questions = lofit.load_task("truthfulqa", lofit.sample_path("truthfulqa"), limit=2)
    pairs = [(q.prompt, " " + a) for q in questions for a in (q.best_answer, *q.incorrect_answers)]
    shared = score_options(tiny_model, pairs)
    batch = make_batch(
        [encode_pair(tiny_model, p, a, max_prompt=128, max_target=128) for p, a in pairs], pad_id(tiny_model)
    )
    with torch.no_grad():
        full = sequence_logprobs(tiny_model, batch)[0].tolist()
    for a, b in zip(shared, full, strict=True):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-3)


def test_truthfulqa_mc_uses_best_vs_incorrect_and_mass_on_correct(tiny_model, monkeypatch):
    question = MCQuestion("q", "b.", ("b.", "c."), ("x.", "y."))
    fixed = {" b.": -1.0, " c.": -5.0, " x.": -2.0, " y.": -0.5}
    for scorer in ("score_options", "score_sequences"):  # the per-question path and the batched default
        monkeypatch.setattr(evaluate_module, scorer, lambda model, pairs, *a, **k: [fixed[o] for _, o in pairs])
    for batched in (True, False):
        result = lofit.truthfulqa_mc(tiny_model, [question], batched=batched)
        assert result["mc1"] == 0.0  # y. beats the best answer
        true, false = math.exp(-1) + math.exp(-5), math.exp(-2) + math.exp(-0.5)
        assert math.isclose(result["mc2"], true / (true + false)) and result["n"] == 1


def test_accuracy_is_greedy_exact_match_followed_by_a_word_end(tiny_model):
    """Build completions from the model's own greedy continuation, so the right answer is known."""
    prompt = "Kinship: "
    ids = tiny_model.encode(prompt)
    generated = tiny_model.generate(ids, max_new_tokens=16).new_ids.tolist()
    tokenizer = tiny_model.tokenizer

    def round_trips(cut):
        return (
            tokenizer(tokenizer.decode(generated[:cut]), add_special_tokens=False)["input_ids"]
            == generated[:cut]
        )

    def ends_word(token):
        text = tokenizer.decode([token])
        return len(text) == 1 and text.isascii() and not (text.isalnum() or text in "-_'")

    cuts = [
        i
        for i in range(1, 15)
        if round_trips(i) and ends_word(generated[i]) and tokenizer.decode(generated[:i]).isascii()
    ]
    if not cuts:
        pytest.skip("the random tiny model's continuation has no ASCII word end")
    cut = cuts[0]
    text = tokenizer.decode(generated[:cut])
    right = Completion(prompt, text[:cut])
    wrong = Completion(prompt, text[: cut - 1] + ("a" if text[cut - 1] != "a" else "b"))
    result = lofit.completion_accuracy(tiny_model, [right, wrong], per_item=True)
    assert [item["correct"] for item in result["items"]] == [True, False] and result["accuracy"] == 0.5


def test_accuracy_rejects_a_prefix_of_a_longer_word(tiny_model, monkeypatch):
    """'son' is wrong when the model goes on to say 'son-in-law'."""
    item = Completion("Bo is Ann's", " son")
    p, t = encode_pair(tiny_model, item.prompt, item.completion, max_prompt=384, max_target=64)
    continuation = t + tiny_model.tokenizer("-in-law", add_special_tokens=False)["input_ids"][:1]

    def fake_target_logits(model, batch, interventions=()):
        keep = batch.keep
        vocab = 258
        logits = torch.full((1, len(keep), vocab), -10.0)
        for column, position in enumerate(keep.tolist()):
            token = continuation[position + 1 - len(p)]
            logits[0, column, token] = 10.0
        return logits, batch.ids[:, keep + 1], batch.targets[:, keep + 1]

    monkeypatch.setattr(evaluate_module, "target_logits", fake_target_logits)
    assert lofit.completion_accuracy(tiny_model, [item])["accuracy"] == 0.0
    continuation[-1] = tiny_model.tokenizer(".", add_special_tokens=False)["input_ids"][0]
    assert lofit.completion_accuracy(tiny_model, [item])["accuracy"] == 1.0


@pytest.mark.slow
def test_smollm2_knows_paris(smollm2):
    items = [
        Completion("The capital of France is", " Paris"),
        Completion("The capital of France is", " Rome"),
    ]
    result = lofit.completion_accuracy(smollm2, items, per_item=True)
    assert [i["correct"] for i in result["items"]] == [True, False]
