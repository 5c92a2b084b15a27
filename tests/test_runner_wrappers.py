"""A TransformerLens or nnsight user's own object gives the same head table as the HF runner, in two lines."""

import pytest
import torch

import workbench as wb

TEXT = "The lighthouse keeper kept a ledger of every ship."


def assert_same_table(table, reference):
    assert list(table.columns) == list(reference.columns)
    for column in ("entropy", "sink_mass", "mean_distance", "max"):
        torch.testing.assert_close(
            torch.tensor(table[column].values), torch.tensor(reference[column].values), rtol=1e-5, atol=1e-6
        )


def test_lens_runner_wraps_an_existing_bridge(tiny):
    from transformer_lens.model_bridge import TransformerBridge

    own = wb.load_model("tiny-gqa")  # what the user has: their own HF model and a bridge booted on it
    bridge = TransformerBridge.boot_transformers(
        "workbench/tiny-gqa", hf_model=own.hf, tokenizer=own.tokenizer
    )
    runner = wb.LensRunner.from_bridge(bridge)
    capture = runner.capture(TEXT)
    assert runner.bridge is bridge and capture.tokens == tiny.capture(TEXT).tokens
    assert_same_table(capture.head_table(), tiny.capture(TEXT).head_table())
    with pytest.raises(TypeError, match="TransformerBridge"):
        wb.LensRunner.from_bridge(object())


def test_nnsight_runner_wraps_an_existing_language_model(tiny):
    from nnsight import LanguageModel

    own = wb.load_model("tiny-gqa")
    lm = LanguageModel(own.hf, tokenizer=own.tokenizer)
    runner = wb.NNsightRunner.from_language_model(lm)
    assert runner.traced is lm and runner.model.hf is own.hf
    assert_same_table(runner.capture(TEXT).head_table(), tiny.capture(TEXT).head_table())
    with pytest.raises(TypeError, match="LanguageModel"):
        wb.NNsightRunner.from_language_model(object())


def test_rows_past_the_input_name_both_numbers(tiny):
    ids = tiny.encode("fourteen bytes")
    assert ids.shape[-1] == 14
    with pytest.raises(wb.SpecError, match=r"16 exact rows.*14 tokens"):
        tiny.capture(ids, wb.CaptureSpec(rows=range(-16, 0)))
    with pytest.raises(wb.SpecError, match="14 tokens"):
        wb.NNsightRunner(tiny).run(ids, wb.CaptureSpec(rows=(14,)))
    assert sorted(tiny.capture(ids, wb.CaptureSpec(rows=range(-14, 0))).rows) == list(range(14))
