"""Artifacts round-trip bit-exactly; offsets apply identically on three runners; folding equals offsets."""

import json

import pytest
import torch
from safetensors.torch import load_file

from workbench.analyses import lofit
from workbench.analyses.lofit.artifact import LofitArtifact
from workbench.runners.lens import LensRunner
from workbench.runners.nnsight import NNsightRunner
from workbench.seam.spec import SpecError

TEXT = "LoFiT adds a learned vector to a few heads' outputs, right before o_proj."


def _artifact(model, heads=((0, 1), (1, 3), (1, 0)), scale=0.7, seed=0):
    offsets = (
        torch.randn(len(heads), model.shape.head_dim, generator=torch.Generator().manual_seed(seed)) * scale
    )
    shape = {
        "num_layers": model.shape.num_layers,
        "num_heads": model.shape.num_heads,
        "head_dim": model.shape.head_dim,
    }
    return LofitArtifact(
        model.name, "clutrr", list(heads), offsets, shape, {"lr": 0.01}, scores=[3.0, 2.0, 1.0]
    )


def test_save_load_is_bit_exact_with_identical_logits(tiny_model, tmp_path):
    artifact = _artifact(tiny_model)
    artifact.save(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "lofit.json").read_text())
    assert (
        meta["heads"][0] == {"layer": 0, "head": 1, "rank": 0, "score": 3.0}
        and meta["num_parameters"] == 3 * 16
    )
    assert set(load_file(str(tmp_path / "a" / "lofit.safetensors"))) == {
        "layer0.head1.offset",
        "layer1.head3.offset",
        "layer1.head0.offset",
    }
    again = LofitArtifact.load(tmp_path / "a")
    assert torch.equal(again.offsets, artifact.offsets) and again.heads == artifact.heads
    assert again.params == artifact.params and again.scores == artifact.scores
    ids = tiny_model.encode(TEXT)
    before = tiny_model.logits(ids, artifact.interventions())
    assert torch.equal(before, tiny_model.logits(ids, again.interventions()))
    assert (before - tiny_model.logits(ids)).abs().max() > 1e-2  # the offsets do something
    artifact.save(tmp_path / "a")  # overwriting an artifact in place works
    assert torch.equal(LofitArtifact.load(tmp_path / "a").offsets, artifact.offsets)


def test_offsets_give_the_same_logits_on_hf_lens_and_nnsight(tiny_model):
    interventions = _artifact(tiny_model).interventions()
    hf, _ = tiny_model.run(TEXT, None, interventions)
    lens, _ = LensRunner(tiny_model).run(TEXT, None, interventions)
    nns, _ = NNsightRunner(tiny_model).run(TEXT, None, interventions)
    assert torch.equal(hf, lens) and torch.equal(hf, nns)
    assert (hf - tiny_model.logits(TEXT)).abs().max() > 1e-2


def test_offset_is_added_to_the_head_slice_before_o_proj(tiny_model):
    artifact = _artifact(tiny_model, heads=((1, 2),))
    seen = {}
    o_proj = tiny_model.hf.model.layers[1].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0].clone()))
    try:
        tiny_model.logits(TEXT)
        base = seen["x"]
        tiny_model.logits(TEXT, artifact.interventions())
        shifted = seen["x"]
    finally:
        handle.remove()
    d = tiny_model.shape.head_dim
    torch.testing.assert_close(
        shifted[..., 2 * d : 3 * d], base[..., 2 * d : 3 * d] + artifact.offsets[0], rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(shifted[..., : 2 * d], base[..., : 2 * d], rtol=0, atol=1e-5)


def test_folded_bias_equals_offsets_and_export_loads_without_the_seam(tiny_model, tmp_path):
    artifact = _artifact(tiny_model, heads=((0, 1), (0, 2), (1, 3)))
    ids = tiny_model.encode(TEXT)
    expected = tiny_model.logits(ids, artifact.interventions())
    biases = lofit.folded_biases(tiny_model, artifact)
    assert sorted(biases) == [0, 1] and biases[0].shape == (tiny_model.hf.config.hidden_size,)
    with lofit.folded(tiny_model, artifact):
        torch.testing.assert_close(tiny_model.logits(ids), expected, rtol=1e-5, atol=1e-5)
    assert tiny_model.hf.model.layers[0].self_attn.o_proj.bias is None  # restored
    lofit.export_folded(tiny_model, artifact, tmp_path / "folded")
    config = json.loads((tmp_path / "folded" / "config.json").read_text())
    assert config["attention_bias"] is True
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "folded", attn_implementation="eager").eval()
    with torch.no_grad():
        logits = plain(input_ids=ids).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert plain.model.layers[0].self_attn.q_proj.bias.abs().max() == 0


def test_broken_artifacts_fail_clearly(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="lofit.json"):
        LofitArtifact.load(tmp_path)
    artifact = _artifact(tiny_model)
    artifact.save(tmp_path / "a")
    (tmp_path / "a" / "lofit.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        LofitArtifact.load(tmp_path / "a")
    with pytest.raises(SpecError, match="twice"):
        LofitArtifact("m", "clutrr", [(0, 1), (0, 1)], torch.zeros(2, 4))
    wrong = _artifact(tiny_model)
    wrong.shape = {"num_layers": 30, "num_heads": 9, "head_dim": 64}
    with pytest.raises(SpecError, match="was made for"):
        lofit.folded_biases(tiny_model, wrong)


@pytest.mark.slow
def test_smollm2_artifact_round_trip_and_three_runners(smollm2, tmp_path):
    artifact = _artifact(smollm2, heads=((3, 1), (17, 3), (25, 8)), scale=1.0)
    artifact.save(tmp_path / "s")
    again = LofitArtifact.load(tmp_path / "s")
    ids = smollm2.encode("The capital of France is Paris, and the capital of Italy is")
    hf, _ = smollm2.run(ids, None, artifact.interventions())
    assert torch.equal(hf, smollm2.run(ids, None, again.interventions())[0])
    assert (hf - smollm2.logits(ids)).abs().max() > 1e-3
    lens, _ = LensRunner(smollm2).run(ids, None, again.interventions())
    nns, _ = NNsightRunner(smollm2).run(ids, None, again.interventions())
    torch.testing.assert_close(lens, hf, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(nns, hf, rtol=1e-5, atol=1e-4)
    with lofit.folded(smollm2, again):
        torch.testing.assert_close(smollm2.logits(ids), hf, rtol=1e-4, atol=1e-4)
