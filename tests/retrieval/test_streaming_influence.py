"""DuoAttention mixing, gate training and the LRM proxy; AttentionInfluence; masking helpers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.analyses.heads import make_head_table
from workbench.analyses.retrieval.influence import attention_influence, influence_heads, read_documents
from workbench.analyses.retrieval.masking import (
    build_mask,
    head_output_means,
    held_out_check,
    per_run_seed,
    random_heads,
)
from workbench.analyses.retrieval.streaming import (
    StreamingMix,
    correlations,
    deployment_check,
    full_heads_by_gate,
    long_range_mass,
    passkey_sample,
    spearman,
    streaming_head_table,
    streaming_mask,
    train_gates,
)
from workbench.seam.interventions import (
    HeadGate,
    HeadOutputReplace,
    UniformAttention,
    interventions_from_json,
)
from workbench.seam.spec import SpecError


def test_streaming_mix_rows():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(1, 6, 10), -1)
    p = p * (torch.arange(10)[None, :] <= torch.arange(4, 10)[:, None])  # causal rows for queries 4..9
    p = p / p.sum(-1, keepdim=True)
    positions = torch.arange(4, 10)
    full = StreamingMix(0, 0, sink=2, recent=3, gate=1.0)
    assert full.is_identity
    torch.testing.assert_close(full.edit(p, positions), p)
    stream = StreamingMix(0, 0, sink=2, recent=3, gate=0.0).edit(p, positions)
    torch.testing.assert_close(stream.sum(-1), torch.ones(1, 6))
    keys = torch.arange(10)
    outside = (keys[None, :] >= 2) & ((positions[:, None] - keys[None, :]) >= 3)
    assert float(stream[0][outside].abs().max()) == 0.0
    inside_ratio = stream[0, -1, [0, 1, 7, 8, 9]] / p[0, -1, [0, 1, 7, 8, 9]]
    torch.testing.assert_close(inside_ratio, inside_ratio[0].expand(5))  # renormalised, not reshaped
    half = StreamingMix(0, 0, sink=2, recent=3, gate=0.25).edit(p, positions)
    torch.testing.assert_close(half, 0.25 * p + 0.75 * stream)
    assert interventions_from_json('[{"kind": "streaming_mix", "layer": 0, "head": 1, "gate": 0.5}]')[0].gate == 0.5


def test_mixed_output_equals_mixed_head_outputs(tiny):
    """Mixing the probability rows == alpha * FullAttn + (1 - alpha) * StreamAttn at the head output."""
    ids = tiny.encode("streaming heads keep a sink and a recent window of keys only, " * 2)
    layer, head, alpha = 1, 2, 0.3

    def o_proj_input(interventions):
        seen = {}
        module = tiny.adapter.attention_modules(tiny.hf)[layer].o_proj
        handle = module.register_forward_pre_hook(lambda m, a: seen.setdefault("z", a[0].detach().clone()))
        try:
            tiny.run(ids, None, interventions)
        finally:
            handle.remove()
        d = tiny.shape.head_dim
        return seen["z"][..., head * d : (head + 1) * d]

    # only layer 1 is edited, so layer 1's inputs are identical across the three runs
    full = o_proj_input([])
    stream = o_proj_input([StreamingMix(layer, head, sink=4, recent=8, gate=0.0)])
    mixed = o_proj_input([StreamingMix(layer, head, sink=4, recent=8, gate=alpha)])
    torch.testing.assert_close(mixed, alpha * full + (1 - alpha) * stream, rtol=1e-5, atol=1e-6)
    assert (full - stream).abs().max() > 1e-3


def test_gate_training_moves_gates_and_restores_the_model(tiny):
    before = [p.requires_grad for p in tiny.hf.parameters()]
    gates = train_gates(tiny, None, length=360, steps=4, sink=4, recent=16, lr=0.05, passkeys=1, words=4,
                        progress=False)
    assert len(gates) == tiny.shape.num_layers * tiny.shape.num_kv_heads
    assert gates.gate.between(0, 1).all() and (gates.gate < 1).any()
    assert len(gates.attrs["history"]) == 4 and math.isfinite(gates.attrs["history"][-1]["loss"])
    assert [p.requires_grad for p in tiny.hf.parameters()] == before
    table = streaming_head_table(tiny, gates, "gate", "duo-gate")
    assert len(table) == 8 and list(table.columns[:3]) == ["layer", "head", "kv_head"]
    assert table.score.is_monotonic_decreasing


def test_gate_training_draws_lengths_from_a_range(tiny):
    gates = train_gates(tiny, None, length=(300, 420), steps=5, sink=4, recent=16, passkeys=1, words=4,
                        progress=False)
    tokens = [h["tokens"] for h in gates.attrs["history"]]
    assert all(300 <= t <= 420 for t in tokens) and len(set(tokens)) > 1
    assert gates.attrs["params"]["length"] == [300, 420] and gates.attrs["params"]["steps_done"] == 5
    capped = train_gates(tiny, None, length=300, steps=50, passkeys=1, words=4, progress=False, max_seconds=0.0)
    assert capped.attrs["params"]["steps_done"] == 1
    with pytest.raises(SpecError):
        train_gates(tiny, None, length=(400, 300), steps=1, progress=False)


def test_streaming_mask_and_gate_ranking(tiny):
    shape = tiny.shape
    gates = pd.DataFrame([{"layer": layer, "kv_head": kv, "gate": g}
                          for (layer, kv), g in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [0.2, 0.9, 0.9, 0.1], strict=True)])
    assert full_heads_by_gate(gates, 0.5) == [(0, 1), (1, 0)]  # tie at 0.9 broken by position
    mask = streaming_mask(shape, [(0, 1), (1, 0)], sink=4, recent=8)
    streamed = {(m.layer, shape.kv_head(m.head)) for m in mask}
    assert streamed == {(0, 0), (1, 1)} and all(m.gate == 0.0 and m.scope == "both" for m in mask)
    assert len(mask) == 2 * shape.num_heads // shape.num_kv_heads


def test_deployment_check_conditions(tiny):
    gates = pd.DataFrame([{"layer": layer, "kv_head": kv, "gate": 1.0 - 0.1 * (2 * layer + kv)}
                          for layer in range(tiny.shape.num_layers) for kv in range(tiny.shape.num_kv_heads)])
    table = deployment_check(tiny, gates, None, None, lengths=(300,), depths=(50,), ratios=(0.5,), seeds=(0,),
                             sink=4, recent=8, max_new_tokens=4, progress=False)
    assert list(table.condition) == ["full", "gate-top", "random", "all-streaming"]
    assert table.loc[1, "full_kv_heads"] == "0.0;0.1" and table.loc[0, "drop"] == 0
    assert table.loc[3, "full_kv_heads"] == "" and (table.num_runs == 3).all()


def test_long_range_mass_matches_exact_rows(tiny):
    sink, recent = 3, 16
    lrm = long_range_mass(tiny, None, length=700, samples=1, sink=sink, recent=recent)
    import random

    from workbench.analyses.retrieval.streaming import _haystack_ids

    sample = passkey_sample(tiny.tokenizer, _haystack_ids(tiny, None), 700, random.Random(0))
    far = list(range(sink + recent, sample.ids.shape[-1]))
    _, capture = tiny.run(sample.ids, wb.CaptureSpec(statistics=(), rows=tuple(far)))
    keys = torch.arange(sample.ids.shape[-1])
    total = torch.zeros(tiny.shape.num_layers, tiny.shape.num_heads, dtype=torch.float64)
    for i in far:
        outside = (keys >= sink) & (i - keys >= recent)
        total += capture.rows[i][0][..., outside].sum(-1).double()
    expected = total / len(far)
    got = torch.tensor(lrm.lrm.values).reshape(tiny.shape.num_layers, tiny.shape.num_heads)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_correlations_and_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    gates = pd.DataFrame({"layer": [0, 0, 1, 1], "kv_head": [0, 1, 0, 1], "gate": [0.1, 0.9, 0.2, 0.8]})
    lrm = pd.DataFrame({"layer": [0] * 4 + [1] * 4, "head": [0, 1, 2, 3] * 2, "kv_head": [0, 0, 1, 1] * 2,
                        "lrm": [0.1, 0.1, 0.5, 0.7, 0.2, 0.2, 0.4, 0.4]})
    out = correlations(gates, lrm, None)
    assert out.iloc[0][["a", "b"]].tolist() == ["gate", "lrm"] and out.iloc[0].spearman == pytest.approx(1.0)
    with pytest.raises(SpecError):
        correlations(gates, None, None)


def test_masking_helpers(tiny):
    heads = [(0, 1), (1, 3)]
    assert all(isinstance(i, UniformAttention) and i.scope == "decode" for i in build_mask(tiny, heads, "uniform"))
    assert all(isinstance(i, HeadGate) and i.gate == 0 for i in build_mask(tiny, heads, "zero", "both"))
    with pytest.raises(SpecError, match="mask mode"):
        build_mask(tiny, heads, "nope")
    with pytest.raises(SpecError, match="means"):
        build_mask(tiny, heads, "mean")
    drawn = random_heads(tiny.shape, 3, seed=4, exclude=[(0, 0), (0, 1)])
    assert drawn == random_heads(tiny.shape, 3, seed=4, exclude=[(0, 0), (0, 1)]) and len(set(drawn)) == 3
    assert not {(0, 0), (0, 1)} & set(drawn)
    with pytest.raises(SpecError, match="cannot draw"):
        random_heads(tiny.shape, 7, seed=0, exclude=[(0, 0), (0, 1)])
    check = held_out_check({"needles": [{"needle": "a"}], "depths": [0, 50]}, [type("N", (), {"needle": "b"})()], [10, 50])
    assert check["shared_depths"] == [50.0] and not check["held_out"]


def test_head_output_means_equal_value_vectors_for_one_token(tiny):
    """One token attends only to itself, so layer 0's head output is its value vector."""
    ids = torch.tensor([[65]])
    means = head_output_means(tiny, [ids])
    attention = tiny.adapter.attention_modules(tiny.hf)[0]
    hidden = tiny.hf.model.layers[0].input_layernorm(tiny.hf.model.embed_tokens(ids))
    values = attention.v_proj(hidden)[0, 0].detach()
    d = tiny.shape.head_dim
    for head in range(tiny.shape.num_heads):
        kv = tiny.shape.kv_head(head)
        torch.testing.assert_close(means[(0, head)], values[kv * d : (kv + 1) * d], rtol=1e-5, atol=1e-6)
    mask = build_mask(tiny, [(0, 2)], "mean", "both", means=means)
    assert isinstance(mask[0], HeadOutputReplace)
    # replacing a head's output by its own single-token mean changes nothing on that token
    torch.testing.assert_close(tiny.logits(ids, mask), tiny.logits(ids), rtol=1e-5, atol=1e-5)


def test_attention_influence(tiny, tmp_path):
    heads = make_head_table([{"layer": 1, "head": 2, "score": 0.9}, {"layer": 0, "head": 0, "score": 0.5},
                             {"layer": 0, "head": 1, "score": 0.1}], "retrieval")
    assert influence_heads(heads, 8, 0.05) == [(1, 2)] and influence_heads(heads, 8, top=2) == [(1, 2), (0, 0)]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The cat sat on the mat. The cat sat on the mat again.")
    (tmp_path / "docs" / "b.txt").write_text("Numbers: 1 2 3 4 5 6 7 8 9 10 11 12.")
    scores = attention_influence(tiny, heads, tmp_path / "docs", top=2, progress=False)
    assert scores.doc.tolist() == ["a", "b"]
    ids = tiny.encode("Numbers: 1 2 3 4 5 6 7 8 9 10 11 12.")
    mask = [UniformAttention(1, 2), UniformAttention(0, 0)]

    def loss(interventions):
        logits = tiny.logits(ids, interventions)[0, :-1]
        return float(torch.nn.functional.cross_entropy(logits, ids[0, 1:]))

    base, masked = loss([]), loss(mask)
    row = scores.iloc[1]
    assert row.loss_base == pytest.approx(base, rel=1e-5) and row.loss_masked == pytest.approx(masked, rel=1e-5)
    assert row.influence == pytest.approx((masked - base) / base, rel=1e-5) and masked != base
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"id": "x", "domain": "web", "text": "hello there"}\n')
    assert read_documents(jsonl).domain.tolist() == ["web"]


def test_attention_influence_random_control(tiny, tmp_path):
    """The control masks as many random heads, a fresh set per document from outside the top
    ``exclude_top``, and its columns are the means over the document's sets, recomputed here by hand."""
    rows = [{"layer": layer, "head": head, "score": 1.0 - 0.01 * (4 * layer + head)}
            for layer in range(tiny.shape.num_layers) for head in range(tiny.shape.num_heads)]
    heads = make_head_table(rows, "retrieval")
    texts = ["The cat sat on the mat. The cat sat on the mat again.", "Numbers: 1 2 3 4 5 6 7 8 9 10 11 12."]
    scores = attention_influence(tiny, heads, texts, top=2, random_sets=2, exclude_top=3, seed=7, progress=False)
    top = {(0, 0), (0, 1), (0, 2)}
    for number, row in enumerate(scores.itertuples()):
        sets = [[tuple(int(x) for x in h.split(".")) for h in s.split()] for s in row.random_heads.split(";")]
        assert len(sets) == 2 and all(len(s) == 2 and not top & set(s) for s in sets)
        assert sets == [random_heads(tiny.shape, 2, per_run_seed(7, draw, number), sorted(top)) for draw in (0, 1)]
        ids = tiny.encode(texts[number])
        losses = []
        for s in sets:
            logits = tiny.logits(ids, [UniformAttention(a, b) for a, b in s])[0, :-1]
            losses.append(float(torch.nn.functional.cross_entropy(logits, ids[0, 1:])))
        assert row.loss_random == pytest.approx(sum(losses) / 2, rel=1e-5)
        expected = sum((loss - row.loss_base) / row.loss_base for loss in losses) / 2
        assert row.influence_random == pytest.approx(expected, rel=1e-5)
    assert scores.attrs["params"]["random_sets"] == 2
