"""Sink_k, hidden sinks and massive activations: hand-computed values on planted patterns."""

import math

import pytest
import torch

import workbench as wb
from workbench.analyses.sinks import (
    column_means,
    residual_inputs,
    sink_rates,
    sinks_report,
    token_type,
    windows,
)


def planted(window=8, layers=2, heads=4):
    """A (1, layer, head, T, T) attention pattern: heads (0,0), (0,2), (1,1) send every row to token 0,
    head (1,3) sends every row i >= 3 to token 3, the rest are uniform over the visible keys."""
    t = window
    uniform = torch.tril(torch.ones(t, t)) / torch.arange(1, t + 1)[:, None]
    a = uniform.repeat(1, layers, heads, 1, 1).double()
    first = torch.zeros(t, t, dtype=torch.float64)
    first[:, 0] = 1
    for layer, head in [(0, 0), (0, 2), (1, 1)]:
        a[0, layer, head] = first
    third = uniform.clone().double()
    third[3:] = 0
    third[3:, 3] = 1
    a[0, 1, 3] = third
    return a


def test_sink_k_matches_hand_computed_values_on_planted_pattern():
    a = planted()
    alpha = column_means(a.sum(-2))  # received / (T - j)
    # token 0 of a uniform head: mean over i of 1/(i+1) = H_8 / 8 = 0.3397 > 0.3, so uniform heads count too
    harmonic = sum(1 / i for i in range(1, 9)) / 8
    assert alpha[0, 0, 1, 0].item() == pytest.approx(harmonic)
    rates = sink_rates(alpha, eps=0.3, max_k=8)
    # k=1: every head (3 planted + 4 uniform, and (1,3) whose rows 0..2 are uniform: (1 + 1/2 + 1/3)/8 = 0.229 < 0.3)
    assert rates[0].item() == pytest.approx(7 / 8)
    # k=4 (token 3): only (1,3), alpha = 1; uniform heads give (1/4+...+1/8)/5 = 0.1268
    assert rates[3].item() == pytest.approx(1 / 8)
    # k=2: uniform heads give (1/2+...+1/8)/7 = 0.2525 < 0.3; k=8: the last token sees only itself, 1/8
    assert rates[1].item() == 0.0
    assert rates[7].item() == 0.0
    assert sink_rates(alpha, eps=0.35, max_k=1)[0].item() == pytest.approx(3 / 8)


def test_windows_drop_the_short_tail_and_refuse_too_little_text():
    ids = torch.arange(10)[None]
    assert windows(ids, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(wb.InputError, match="fewer than one window"):
        windows(ids, 16)


def test_report_on_a_model_with_planted_sinks(tiny):
    """Through the seam: bias +40 on token 0 in three heads, on token 5 in one, uniform attention elsewhere."""
    window, layers, heads = 32, tiny.shape.num_layers, tiny.shape.num_heads
    planted_first = [(0, 0), (0, 3), (1, 2)]
    interventions = [wb.LogitBias(layer, head, keys=(0,), bias=40.0) for layer, head in planted_first]
    interventions.append(wb.LogitBias(1, 1, keys=(5,), bias=40.0))
    interventions += [wb.UniformAttention(layer, head) for layer in range(layers) for head in range(heads)
                      if (layer, head) not in planted_first and (layer, head) != (1, 1)]
    text = "The quick brown fox jumps over the lazy dog; then it rests. " * 4
    report, tables = sinks_report(tiny, text, window=window, interventions=interventions)
    ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert report["params"]["windows"] == len(ids) // window
    # uniform over T=32: alpha_0 = H_32 / 32 = 0.127 < 0.3; head (1,1) rows 0..4 uniform: (1+1/2+..+1/5)/32 < 0.3
    assert report["sink_1"] == pytest.approx(3 / (layers * heads))
    assert report["sink_k"][5] == pytest.approx(1 / (layers * heads))
    assert max(report["sink_k"][1:5] + report["sink_k"][6:]) == 0.0
    top = report["heads"]["heads"][:3]
    assert {(h["layer"], h["head"]) for h in top} == set(planted_first)
    assert all(h["score"] > 0.99 and h["sink_fraction"] == 1.0 for h in top)
    # the only hidden sinks (alpha > 0.1 at 1 <= j < 16) are position 5 in head (1,1), or uniform rows
    flagged = report["hidden_sinks"]["positions"]
    at_five = [e for e in flagged if e["position"] == 5]
    assert len(at_five) == report["params"]["windows"]
    assert at_five[0]["token"] == tiny.tokenizer.decode([ids[5]])
    assert at_five[0]["max_column_mean"] > 0.99 and 1 in at_five[0]["layers"]
    # uniform heads: alpha_j = (H_32 - H_j) / (32 - j) <= 0.1 for j >= 1, so nothing else is flagged
    uniform_alpha = max((sum(1 / i for i in range(j + 1, 33)) / (32 - j)) for j in range(1, 16))
    assert uniform_alpha < 0.1
    assert {e["position"] for e in flagged} == {5}
    assert len(tables["hidden_sinks"]) == len(flagged)


def test_massive_dims_found_where_planted(tiny):
    """A pre-hook that writes a huge value into dim 3 of token 0 and token 7 at block 1 is found at layer 1."""
    layer = tiny.hf.model.layers[1]

    def plant(module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).clone()
        hidden[:, 0, 3] = 500.0
        hidden[:, 7, 3] = -500.0
        if args:
            return (hidden, *args[1:]), kwargs
        kwargs["hidden_states"] = hidden
        return args, kwargs

    handle = layer.register_forward_pre_hook(plant, with_kwargs=True)
    try:
        # tiny's hidden size is 64, so one dominant dim normalises to ~sqrt(64) = 8: use a threshold of 5
        report, _ = sinks_report(tiny, "Massive activations sit at the sink token. " * 6, window=32, massive_threshold=5.0)
    finally:
        handle.remove()
    per_layer = report["massive_dims"]["per_layer"]
    assert [d["dim"] for d in per_layer[1]["dims"]] == [3]
    assert per_layer[1]["dims"][0]["fraction"] == 1.0 and per_layer[1]["dims"][0]["sign"] == 1
    # normalised value: 500 / sqrt(500^2 / hidden + rest) ~ sqrt(hidden)
    assert per_layer[1]["dims"][0]["mean_abs"] == pytest.approx(math.sqrt(tiny.hf.config.hidden_size), rel=0.01)
    assert all(not row["dims"] for row in per_layer if row["layer"] != 1)
    massive = report["massive_dims"]
    assert massive["sink_dims"] == [3] and massive["from_layer"] == 1
    assert {(t["position"], tuple(t["layers"])) for t in massive["tokens"]} == {(7, (1,))}


def test_residual_hooks_are_removed_after_an_exception(tiny):
    layers = tiny.hf.model.layers
    before = [len(layer._forward_pre_hooks) for layer in layers]
    with pytest.raises(RuntimeError):
        with residual_inputs(tiny):
            raise RuntimeError("boom")
    assert [len(layer._forward_pre_hooks) for layer in layers] == before


def test_token_types():
    assert token_type(".") == "punctuation"
    assert token_type("\n\n") == "newline"
    assert token_type(" the") == "stopword"
    assert token_type(" fox") == "word"
    assert token_type(" 42") == "number"
