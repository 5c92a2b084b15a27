"""The batched full/streaming mix (two SDPA calls per layer, seam/streaming.py) equals the per-head
probability edits of the PyTorch path: outputs, gradients of the gates, padding and decode steps."""

from __future__ import annotations

import pytest
import torch

from workbench.seam import streaming
from workbench.seam.interventions import HeadGate, StreamingMix


def _mix(shape, gates, sink=3, recent=5):
    return [
        StreamingMix(layer, head, sink=sink, recent=recent, gate=gates[layer, shape.kv_head(head)])
        for layer in range(shape.num_layers)
        for head in range(shape.num_heads)
    ]


def _forward(model, ids, interventions, attention_mask=None):
    with model.seam(None, interventions) as session:
        logits = model.hf(input_ids=ids, attention_mask=attention_mask, use_cache=False).logits
    return logits, session


def _per_head(monkeypatch):
    monkeypatch.setattr(streaming, "layer_mix", lambda *args: None)


@pytest.fixture()
def ids(tiny):
    torch.manual_seed(0)
    return torch.randint(0, tiny.hf.config.vocab_size, (2, 40))


def test_batched_mix_equals_per_head_edits_and_their_gradients(tiny, ids, monkeypatch):
    shape = tiny.shape
    torch.manual_seed(1)
    values = torch.rand(shape.num_layers, shape.num_kv_heads)
    results = {}
    for name in ("batched", "per-head"):
        if name == "per-head":
            _per_head(monkeypatch)
        alpha = values.clone().requires_grad_(True)
        logits, session = _forward(tiny, ids, _mix(shape, alpha))
        (logits.square().mean()).backward()
        results[name] = (logits.detach(), alpha.grad.clone(), session.ran())
    assert results["batched"][2] == {streaming.BACKEND}
    assert results["per-head"][2] == {"pytorch"}
    torch.testing.assert_close(results["batched"][0], results["per-head"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results["batched"][1], results["per-head"][1], rtol=1e-4, atol=1e-7)
    assert results["batched"][1].abs().min() > 0  # every gate gets a gradient
    plain, _ = _forward(tiny, ids, [])
    assert (plain - results["batched"][0]).abs().max() > 1e-3  # the mix changes the output


def test_constant_gates_with_padding_and_a_partial_layer(tiny, monkeypatch):
    """Deployment form: gate 0 on some heads, none on others, right padding; the padded rows' outputs
    do not matter but the real rows must match the per-head path."""
    torch.manual_seed(2)
    ids = torch.randint(0, tiny.hf.config.vocab_size, (2, 30))
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, 22:] = 0
    edits = [
        StreamingMix(0, 1, sink=2, recent=4, gate=0.0),
        StreamingMix(1, 0, sink=2, recent=4, gate=0.0),
        StreamingMix(1, 3, sink=2, recent=4, gate=0.4),
    ]
    batched, session = _forward(tiny, ids, edits, mask)
    assert streaming.BACKEND in session.ran()
    _per_head(monkeypatch)
    reference, session = _forward(tiny, ids, edits, mask)
    assert streaming.BACKEND not in session.ran()
    torch.testing.assert_close(batched[0], reference[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[1, :22], reference[1, :22], rtol=1e-5, atol=1e-5)


def test_decode_steps_match(tiny, monkeypatch):
    shape = tiny.shape
    edits = _mix(shape, torch.tensor([[0.0, 1.0], [0.3, 0.0]]), sink=2, recent=6)
    prompt = torch.randint(0, tiny.hf.config.vocab_size, (1, 25), generator=torch.Generator().manual_seed(3))
    batched = tiny.generate(prompt, max_new_tokens=8, interventions=edits)
    _per_head(monkeypatch)
    reference = tiny.generate(prompt, max_new_tokens=8, interventions=edits)
    assert batched.new_ids.tolist() == reference.new_ids.tolist()


def test_other_interventions_keep_the_per_head_path(tiny, ids):
    edits = [StreamingMix(0, 0, sink=2, recent=4, gate=0.0), HeadGate(0, 1, gate=0.5)]
    _, session = _forward(tiny, ids, edits)
    assert streaming.BACKEND not in session.ran()
    two_windows = [
        StreamingMix(0, 0, sink=2, recent=4, gate=0.0),
        StreamingMix(0, 1, sink=2, recent=5, gate=0.0),
    ]
    _, session = _forward(tiny, ids, two_windows)
    assert streaming.BACKEND not in session.ran()


def test_gate_training_batches_samples_and_stops_at_a_plateau(tiny):
    from workbench.analyses.retrieval.streaming import Plateau, train_gates

    seen = []
    gates = train_gates(
        tiny,
        None,
        length=300,
        steps=40,
        sink=4,
        recent=16,
        passkeys=1,
        words=4,
        batch=2,
        plateau=Plateau(window=4, tolerance=10.0, gate_tolerance=10.0),
        progress=False,
        on_window=seen.append,
    )
    params = gates.attrs["params"]
    # the first check comes at max(2 windows, 20% warm-up) = step 8; a huge tolerance converges there
    assert params["stopped"] == "plateau" and params["steps_done"] == 8 and params["batch"] == 2
    assert gates.attrs["plateau_checks"][-1]["converged"] and len(seen) == 2
    strict = train_gates(
        tiny,
        None,
        length=300,
        steps=12,
        sink=4,
        recent=16,
        passkeys=1,
        words=4,
        plateau=Plateau(window=4, tolerance=0.0, gate_tolerance=0.0),
        progress=False,
    )
    assert strict.attrs["params"]["stopped"] == "steps" and strict.attrs["params"]["steps_done"] == 12
    assert not any(c["converged"] for c in strict.attrs["plateau_checks"])


def test_plateau_rule():
    from workbench.analyses.retrieval.streaming import Plateau

    rule = Plateau(window=3, tolerance=0.1, gate_tolerance=0.05)
    flat = rule.check([1.0, 1.0, 1.0, 1.0, 1.0, 1.02], [0.5, 0.5], [0.5, 0.52])
    assert flat["converged"] and abs(flat["relative_change"] - 0.02 / 3) < 1e-9
    assert not rule.check([2.0, 2.0, 2.0, 1.0, 1.0, 1.0], [0.5], [0.5])["converged"]  # loss still falling
    assert not rule.check([1.0] * 6, [0.5, 0.5], [0.5, 0.6])["converged"]  # a gate still moving


def test_batched_niah_decoding_equals_one_at_a_time(tiny):
    from workbench.analyses.retrieval.haystack import PromptBuilder, passkey_needles, read_haystack
    from workbench.analyses.retrieval.niah import generate_with_decode_capture, run_prompts

    builder = PromptBuilder(tiny, read_haystack(None), chat=False)
    prompts = [builder.build(n, 200, d) for n in passkey_needles(2, seed=1) for d in (20, 80)]
    edits = [StreamingMix(1, h, sink=2, recent=8, gate=0.0) for h in range(tiny.shape.num_heads)]
    batched = run_prompts(tiny, prompts, interventions=edits, max_new_tokens=6, batch_size=3, progress=False).runs
    for prompt, row in zip(prompts, batched.itertuples(), strict=True):
        single = generate_with_decode_capture(
            tiny, prompt.ids, max_new_tokens=6, interventions=edits, spec=None
        )
        assert row.response == single.text.strip() and row.new_tokens == len(single.new_ids)


def test_the_schedule_fits_the_time_budget(tiny):
    from workbench.analyses.retrieval.streaming import train_gates

    gates = train_gates(
        tiny,
        None,
        length=300,
        steps=10_000,
        sink=4,
        recent=16,
        passkeys=1,
        words=4,
        progress=False,
        max_seconds=20.0,
        fit_schedule=True,
    )
    params = gates.attrs["params"]
    assert 16 <= params["schedule_steps"] < 10_000
    assert params["stopped"] in ("steps", "time") and params["steps_done"] <= params["schedule_steps"]
