"""Interventions change what they should and nothing else."""

import math

import pytest
import torch

import workbench as wb
from workbench.runners.lens import LensRunner
from workbench.runners.nnsight import NNsightRunner

TEXT = "Interventions are data: a bias, an edit, a gate. Each one must do exactly what it says."


@pytest.fixture(scope="module")
def model():
    return wb.load_model("tiny-gqa")


@pytest.mark.parametrize("gamma", [0.25, 3.0])
def test_logit_bias_ln_gamma_equals_scaling_column_zero(model, gamma):
    spec = wb.CaptureSpec(rows=(5, 20, -1))
    biased_logits, biased = model.run(TEXT, spec, [wb.LogitBias(1, 2, keys=(0,), bias=math.log(gamma))])
    scaled_logits, scaled = model.run(TEXT, spec, [wb.ScaleKeys(1, 2, keys=(0,), factor=gamma)])
    torch.testing.assert_close(biased_logits, scaled_logits, rtol=1e-5, atol=1e-5)
    for position in biased.rows:
        torch.testing.assert_close(biased.rows[position], scaled.rows[position], rtol=1e-5, atol=1e-6)
    # and it really is "scale column 0 by gamma and renormalise" of the unedited rows
    _, base = model.run(TEXT, spec)
    p = base.rows[20][0, 1, 2].to(torch.float64)
    expected = p.clone()
    expected[0] *= gamma
    expected /= expected.sum()
    torch.testing.assert_close(biased.rows[20][0, 1, 2].to(torch.float64), expected, rtol=1e-5, atol=1e-6)
    # other heads and the previous layer are untouched
    torch.testing.assert_close(biased.rows[20][0, 1, 0], base.rows[20][0, 1, 0], rtol=0, atol=1e-7)
    torch.testing.assert_close(biased.rows[20][0, 0], base.rows[20][0, 0], rtol=0, atol=1e-7)


def test_head_gate_zero_changes_logits_and_gate_one_is_bit_identical(model):
    base = model.logits(TEXT)
    gated_off = model.logits(TEXT, [wb.HeadGate(0, 1, gate=0.0)])
    gated_on = model.logits(TEXT, [wb.HeadGate(0, 1, gate=1.0)])
    assert (base - gated_off).abs().max() > 1e-3
    assert torch.equal(base, gated_on)


def test_head_gate_zero_equals_zeroing_the_o_proj_input_slice(model):
    """The gate acts on exactly the head's slice of the o_proj input."""
    seen = {}
    o_proj = model.hf.model.layers[0].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0].clone()))
    try:
        model.logits(TEXT)
        base = seen["x"]
        model.logits(TEXT, [wb.HeadGate(0, 1, gate=0.0)])
        gated = seen["x"]
    finally:
        handle.remove()
    d = model.shape.head_dim
    assert torch.all(gated[..., d : 2 * d] == 0)
    # other heads: same values (the gated layer runs on the exact path, the baseline on SDPA)
    torch.testing.assert_close(gated[..., :d], base[..., :d], rtol=0, atol=1e-6)
    torch.testing.assert_close(gated[..., 2 * d :], base[..., 2 * d :], rtol=0, atol=1e-6)


def test_uniform_attention_is_uniform_over_visible_keys(model):
    spec = wb.CaptureSpec(rows=(0, 7, 30), heads=(3,))
    _, capture = model.run(TEXT, spec, [wb.UniformAttention(1, 3)])
    for position, row in capture.rows.items():
        expected = torch.zeros(row.shape[-1])
        expected[: position + 1] = 1.0 / (position + 1)
        torch.testing.assert_close(row[0, 1, 0], expected, rtol=1e-6, atol=1e-7)


def test_mean_and_affine_output_edits(model):
    seen = {}
    o_proj = model.hf.model.layers[1].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0].clone()))
    d = model.shape.head_dim
    vector = torch.linspace(-1, 1, d)
    try:
        model.logits(TEXT, wb.mask_heads([(1, 2)], mode="mean", means={(1, 2): vector}))
        replaced = seen["x"][..., 2 * d : 3 * d]
        model.logits(TEXT)
        base = seen["x"][..., 2 * d : 3 * d]
        model.logits(TEXT, [wb.HeadOutputAffine(1, 2, scale=[0.5] * d, offset=vector)])
        affine = seen["x"][..., 2 * d : 3 * d]
    finally:
        handle.remove()
    torch.testing.assert_close(replaced, vector.expand_as(replaced))
    torch.testing.assert_close(affine, 1.5 * base + vector, rtol=1e-5, atol=1e-6)


def test_scope_prefill_leaves_decode_steps_alone(model):
    prompt = "Scopes: this bias acts only while the prompt is read."
    base = model.generate(prompt, max_new_tokens=6, spec=wb.CaptureSpec(statistics=("entropy",)))
    decode_only = model.generate(
        prompt,
        max_new_tokens=6,
        spec=wb.CaptureSpec(statistics=("entropy",)),
        interventions=[wb.LogitBias(0, 0, keys=(0,), bias=5.0, scope="decode")],
    )
    n = len(base.prompt_ids)
    # prefill rows identical; decode rows of the biased head differ
    torch.testing.assert_close(
        base.capture.row["entropy"][..., :n], decode_only.capture.row["entropy"][..., :n], rtol=0, atol=0
    )
    assert (
        base.capture.row["entropy"][0, 0, 0, n:] - decode_only.capture.row["entropy"][0, 0, 0, n:]
    ).abs().max() > 1e-4


def test_interventions_round_trip_json_and_apply_identically():
    items = [
        wb.UniformAttention(0, 1, scope="decode"),
        wb.LogitBias(1, 0, keys=(0, 3), key_range=(5, 9), bias=-1.5),
        wb.ScaleKeys(1, 1, keys=(0,), factor=2.0),
        wb.HeadGate(0, 2, gate=0.0, scope="prefill"),
        wb.HeadOutputAffine(1, 3, scale=[0.1, 0.2], offset=[1.0, 2.0]),
    ]
    again = wb.interventions_from_json(wb.interventions_to_json(items))
    assert again == items
    assert "LogitBias(layer=1, head=0" in repr(items[1])


def test_interventions_are_the_same_on_every_runner(model):
    items = [wb.LogitBias(1, 2, keys=(0,), bias=1.0), wb.HeadGate(0, 1, gate=0.0), wb.UniformAttention(1, 0)]
    hf_logits, _ = model.run(TEXT, None, items)
    lens_logits, _ = LensRunner(model).run(TEXT, None, items)
    nns_logits, _ = NNsightRunner(model).run(TEXT, None, items)
    assert torch.equal(hf_logits, lens_logits)
    assert torch.equal(hf_logits, nns_logits)
