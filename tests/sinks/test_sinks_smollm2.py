"""SmolLM2: the sinks report against an independent eager computation, and ACT/ZeroTuning on it."""

import pytest
import torch
from reference import eager_attentions

from workbench.analyses.calibration import act, load_task, score_task, zerotuning
from workbench.analyses.sinks import normalised, sinks_report, windows

pytestmark = pytest.mark.slow


def test_sinks_report_matches_eager_attention_and_hidden_states(smollm2, sample_text):
    report, _ = sinks_report(smollm2, sample_text, window=64, max_windows=2)
    ids = windows(smollm2.tokenizer(sample_text, add_special_tokens=False, return_tensors="pt")["input_ids"], 64)[:2]
    attentions, _ = eager_attentions(smollm2.hf, ids)
    p = torch.stack(attentions, 1)  # (window, layer, head, T, T)
    alpha = p.sum(-2) / torch.arange(64, 0, -1, dtype=torch.float64)
    assert report["sink_1"] == pytest.approx(float((alpha[..., 0] > 0.3).double().mean()), abs=1e-9)
    expected_k = (alpha[..., :32] > 0.3).double().mean(dim=(0, 1, 2))
    assert report["sink_k"] == pytest.approx(expected_k.tolist(), abs=1e-9)
    by_head = {(h["layer"], h["head"]): h["score"] for h in report["heads"]["heads"]}
    assert by_head[(18, 8)] == pytest.approx(float(alpha[:, 18, 8, 0].mean()), abs=1e-4)
    # the first token is the sink: Sink_1 far above every later k (spec §9: ~0.70 vs <= 0.02)
    assert report["sink_1"] > 0.5 and max(report["sink_k"][1:]) < 0.1
    # massive activations, independently from output_hidden_states (hidden_states[l] enters block l)
    with torch.no_grad():
        hidden = smollm2.hf(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in (3, 15):
        values = normalised(hidden[layer][:, 0].double()).abs()
        expected = sorted({int(d) for d in (values > 20).nonzero()[:, 1].tolist()})
        assert [d["dim"] for d in report["massive_dims"]["per_layer"][layer]["dims"]] == expected
    assert report["massive_dims"]["sink_dims"]  # SmolLM2 does have a sink dimension


def test_act_and_zerotuning_change_sentiment_scores(smollm2):
    task = load_task("sentiment", "calibration", limit=4)
    base = torch.tensor(score_task(smollm2, task).scores)
    for interventions in (act([(layer, h) for layer in (3, 4) for h in range(9)]), zerotuning([(2, 0), (5, 3)], 2.0)):
        changed = torch.tensor(score_task(smollm2, task, interventions).scores)
        assert (changed - base).abs().max() > 1e-3
