"""ACT, ZeroTuning, VAR-style redistribution and SoftPAG: exact properties, and effects through the seam."""

import math

import pytest
import torch

import workbench as wb
from workbench.analyses.calibration import (
    ACT,
    Redistribute,
    SoftPAG,
    act,
    act_sinks,
    column_means,
    zerotuning,
)
from workbench.seam.interventions import Intervention, interventions_from_json, interventions_to_json


def causal_rows(t=10, seed=0, batch=2):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, t, t, generator=generator, dtype=torch.float64) * 2
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1), torch.arange(t)


# --- ZeroTuning -------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.25, 0.5, 2.0, 4.0])
def test_zerotuning_post_softmax_rescaling_equals_the_logit_bias_form(gamma):
    t = 12
    scores = torch.randn(3, t, t, dtype=torch.float64)
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    a = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    # ZeroTuning as written: a0' = gamma a0 / D, aj' = aj / D, D = (gamma - 1) a0 + 1
    d = (gamma - 1) * a[..., :1] + 1
    rescaled = torch.cat([gamma * a[..., :1], a[..., 1:]], -1) / d
    # the logit-bias form that the seam runs: + ln(gamma) on key 0 before softmax
    [bias] = zerotuning([(0, 0)], gamma)
    row_bias = torch.zeros(t, dtype=torch.float64)
    bias.add_to(row_bias)
    biased = torch.softmax((scores + row_bias).masked_fill(~mask, float("-inf")), -1)
    torch.testing.assert_close(biased, rescaled, rtol=1e-12, atol=1e-12)
    assert bias.bias == pytest.approx(math.log(gamma))


def test_zerotuning_bias_equals_scaled_probabilities_through_the_model(tiny):
    ids = tiny.encode("ZeroTuning scales the attention to the first token.")
    heads = [(0, 1), (1, 0), (1, 3)]
    baseline = tiny.logits(ids)
    as_bias = tiny.logits(ids, zerotuning(heads, 3.0))
    as_probs = tiny.logits(ids, [wb.ScaleKeys(layer, head, keys=(0,), factor=3.0) for layer, head in heads])
    torch.testing.assert_close(as_bias, as_probs, rtol=1e-5, atol=1e-5)
    assert (as_bias - baseline).abs().max() > 1e-3  # it does change the output
    torch.testing.assert_close(tiny.logits(ids, zerotuning(heads, 1.0)), baseline, rtol=0, atol=0)


# --- ACT --------------------------------------------------------------------------------------


def planted_hidden_sink(t=20):
    """Rows attend 0.6 to token 0, 0.3 to token 4 (from row 4 on) and spread the rest uniformly over
    the other visible keys; every other column mean stays below 0.1."""
    p = torch.zeros(1, t, t, dtype=torch.float64)
    p[0, 0, 0] = 1.0
    for i in range(1, t):
        p[0, i, 0] = 0.6
        if i >= 4:
            p[0, i, 4] = 0.3
        rest = [j for j in range(1, i + 1) if j != 4]
        left = 1.0 - p[0, i].sum()
        for j in rest:
            p[0, i, j] += left / len(rest)
    return p, torch.arange(t)


def test_act_detects_the_hidden_sink_and_spares_the_first():
    p, positions = planted_hidden_sink()
    sinks = act_sinks(p, positions, threshold=0.1)
    assert sinks[0].nonzero().flatten().tolist() == [4]  # token 0 is the first sink, so it is kept


def test_act_keeps_rows_summing_to_one_and_moves_exactly_one_minus_beta_of_the_sink_mass():
    beta = 0.4
    p, positions = planted_hidden_sink()
    edited = ACT(0, 0, beta=beta).edit(p, positions)
    torch.testing.assert_close(edited.sum(-1), torch.ones(1, 20, dtype=torch.float64))
    sink_before, sink_after = p[0, :, 4], edited[0, :, 4]
    torch.testing.assert_close(sink_after, beta * sink_before)
    moved = (edited[0] - p[0]).clamp_min(0).sum(-1)  # what the non-sink keys gained, per row
    torch.testing.assert_close(moved, (1 - beta) * sink_before)
    # in proportion to the existing non-sink attention (token 0 included)
    rows = slice(4, None)
    others = [j for j in range(20) if j != 4]
    ratio = edited[0, rows][:, others] / p[0, rows][:, others].clamp_min(1e-30)
    visible = p[0, rows][:, others] > 0
    expected = 1 + (1 - beta) * 0.3 / 0.7  # budget / non-sink mass
    torch.testing.assert_close(ratio[visible], torch.full_like(ratio[visible], expected))
    torch.testing.assert_close(edited[0, :4], p[0, :4])  # rows that do not see the sink are unchanged


def test_act_on_random_rows_moves_exactly_the_budget():
    p, positions = causal_rows(t=16)
    beta = 0.4
    sinks = act_sinks(p, positions, 0.1)
    edited = ACT(0, 0, beta=beta).edit(p, positions)
    torch.testing.assert_close(edited.sum(-1), p.sum(-1))
    sink_mass = (p * sinks[:, None]).sum(-1)
    torch.testing.assert_close((edited * sinks[:, None]).sum(-1), beta * sink_mass)
    assert sinks.any()  # the random rows do have hidden sinks, so the test moved something


def test_act_column_means_ignore_padding():
    p, positions = causal_rows(t=8, batch=1)
    padded = torch.zeros(1, 11, 11, dtype=torch.float64)
    padded[0, :8, :8] = p[0]
    padded[0, 8:, :8] = p[0, -1]  # pad query rows attend to the real keys; pad keys get nothing
    torch.testing.assert_close(column_means(padded, torch.arange(11))[0, :8], column_means(p, positions)[0])
    edited = ACT(0, 0).edit(padded, torch.arange(11))
    torch.testing.assert_close(edited[0, :8, :8], ACT(0, 0).edit(p, positions)[0])


def test_act_through_the_seam_padded_batch_matches_single_sequences(tiny):
    texts = ["Short one.", "A longer sentence, with commas; and more words."]
    sequences = [tiny.encode(t)[0] for t in texts]
    length = max(len(s) for s in sequences)
    ids = torch.zeros(2, length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(sequences):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    interventions = act([(0, 0), (0, 2), (1, 1), (1, 3)], threshold=0.05)
    batched, _ = tiny.run(ids, None, interventions, attention_mask=mask)
    changed = False
    for row, s in enumerate(sequences):
        single = tiny.logits(s[None], interventions)
        torch.testing.assert_close(batched[row, : len(s)], single[0], rtol=1e-4, atol=1e-4)
        changed |= bool((single - tiny.logits(s[None])).abs().max() > 1e-4)
    assert changed


def test_act_is_prefill_only_by_default():
    from workbench.seam.plan import make_plan

    items = act([(0, 0), (1, 1)])
    assert all(item.scope == "prefill" for item in items)
    assert make_plan(None, items, 0, "prefill", 4).prob_edits
    assert not make_plan(None, items, 0, "decode", 4).prob_edits
    assert make_plan(None, items, 0, "prefill", 4).needs_all_queries  # column means: no query chunking


# --- VAR-style and SoftPAG ---------------------------------------------------------------------


def test_redistribute_moves_sink_mass_to_the_target_span_in_proportion():
    p, positions = causal_rows(t=12, batch=1)
    edit = Redistribute(0, 0, sinks=(0,), target=(2, 6), p=0.6, min_target_mass=0.0, max_sink_share=1.0)
    edited = edit.edit(p, positions)
    torch.testing.assert_close(edited.sum(-1), p.sum(-1))
    after = positions >= 6
    torch.testing.assert_close(edited[0, ~after], p[0, ~after])  # queries before the span's end untouched
    torch.testing.assert_close(edited[0, after, 0], 0.6 * p[0, after, 0])
    gained = edited[0, after, 2:6] - p[0, after, 2:6]
    torch.testing.assert_close(gained.sum(-1), 0.4 * p[0, after, 0])
    share = p[0, after, 2:6] / p[0, after, 2:6].sum(-1, keepdim=True)
    torch.testing.assert_close(gained, share * 0.4 * p[0, after, 0, None])
    outside = [1, *range(6, 12)]
    torch.testing.assert_close(edited[0, after][:, outside], p[0, after][:, outside])


def test_redistribute_skips_rows_with_little_target_mass():
    p, positions = causal_rows(t=12, batch=1)
    span_mass = p[0, :, 2:6].sum(-1)
    edit = Redistribute(0, 0, sinks=(0,), target=(2, 6), p=0.6, min_target_mass=0.5, max_sink_share=1.0)
    edited = edit.edit(p, positions)
    skipped = (span_mass < 0.5) | (positions < 6)
    assert skipped.any() and (~skipped).any()
    torch.testing.assert_close(edited[0, skipped], p[0, skipped])
    assert not torch.allclose(edited[0, ~skipped], p[0, ~skipped])


def test_softpag_interpolates_towards_the_identity():
    p, positions = causal_rows(t=9)
    half = SoftPAG(0, 0, u=0.25).edit(p, positions)
    torch.testing.assert_close(half, 0.75 * p + 0.25 * torch.eye(9, dtype=torch.float64))
    full = SoftPAG(0, 0, u=1.0).edit(p, positions)
    torch.testing.assert_close(full, torch.eye(9, dtype=torch.float64).expand_as(p))


def test_softpag_full_strength_makes_the_head_copy_its_own_value(tiny):
    ids = tiny.encode("PAG: every token attends only to itself.")
    t = ids.shape[-1]
    _, capture = tiny.run(ids, wb.CaptureSpec(statistics=("max",), rows=tuple(range(t))), [SoftPAG(1, 2, u=1.0)])
    for position, row in capture.rows.items():
        assert row[0, 1, 2, position].item() == pytest.approx(1.0)
    assert capture.row["max"][0, 1, 1].min() < 0.999  # other heads untouched


@pytest.mark.parametrize(
    "item",
    [ACT(3, 1, beta=0.3), Redistribute(2, 0, sinks=(0, 7), target=(1, 9), p=0.5), SoftPAG(1, 1, u=0.2), *zerotuning([(0, 2)], 2.0)],
)
def test_calibration_interventions_round_trip_through_json(item):
    [back] = interventions_from_json(interventions_to_json([item]))
    assert back == item and isinstance(back, Intervention)


def test_calibration_interventions_reject_bad_settings():
    with pytest.raises(wb.SpecError, match="beta"):
        ACT(0, 0, beta=1.5)
    with pytest.raises(wb.SpecError, match="gamma"):
        zerotuning([(0, 0)], 0.0)
    with pytest.raises(wb.SpecError, match="u must"):
        SoftPAG(0, 0, u=2.0)
    with pytest.raises(wb.SpecError, match="target"):
        Redistribute(0, 0, target=(5, 2))


def test_act_runs_on_the_nnsight_runner(tiny):
    from workbench.runners.nnsight import NNsightRunner

    ids = tiny.encode("Every runner goes through the one seam.")
    interventions = act([(0, 1), (1, 2)], threshold=0.05) + zerotuning([(1, 0)], 2.0)
    expected = tiny.logits(ids, interventions)
    assert (expected - tiny.logits(ids)).abs().max() > 1e-4
    logits, _ = NNsightRunner(tiny).run(ids, None, interventions)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_act_runs_on_the_transformerlens_runner():
    from workbench.runners.lens import LensRunner

    model = wb.load_model("tiny-gqa")  # its own copy: the bridge wraps the HF model in place
    ids = model.encode("Every runner goes through the one seam.")
    interventions = act([(0, 1), (1, 2)], threshold=0.05) + [SoftPAG(0, 3, u=0.5)]
    expected = model.logits(ids, interventions)
    logits, _ = LensRunner(model).run(ids, None, interventions)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert (expected - model.logits(ids)).abs().max() > 1e-4
