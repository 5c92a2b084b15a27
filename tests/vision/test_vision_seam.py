"""ViT attention goes through the workbench seam: exact, bidirectional, per layer, interventions apply."""

import pytest
import torch

import workbench as wb
from workbench.adapters import VIT_ADAPTER
from workbench.runners.vision import Preprocess, ResidualProjection, VisionModel


def _eager_attentions(model, pixels):
    model.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            return model(pixel_values=pixels, output_attentions=True, output_hidden_states=True)
    finally:
        model.config._attn_implementation = "workbench"


def test_adapter_shape_and_modules(make_dinov2):
    model = make_dinov2(layers=3, heads=4, hidden=32)
    shape = VIT_ADAPTER.shape(model)
    assert (shape.num_layers, shape.num_heads, shape.num_kv_heads, shape.head_dim, shape.causal) == (3, 4, 4, 8, False)
    modules = VIT_ADAPTER.attention_modules(model)
    # the modules that hold q/k/v and call the attention interface (5.2x: layer.attention; older: its inner module)
    assert all(any(hasattr(m, name) for name in ("q_proj", "query")) for m in modules)
    assert len(modules) == 3 and len({id(m) for m in modules}) == 3
    assert all(m.is_causal is False for m in modules)
    assert wb.instrument  # the adapter is found by model_type
    from workbench.adapters import adapter_for

    assert adapter_for(model) is VIT_ADAPTER


def test_older_dinov2_layout_is_captured_through_its_inner_self_attention(make_dinov2):
    """transformers up to at least 5.17 (the lent GPU's) wraps the module that calls the attention interface:
    ``layer.attention.attention`` (Dinov2SelfAttention) inside ``layer.attention`` (Dinov2Attention). The
    adapter must hand the seam the inner one, or no layer is captured (seen on the GPU, 2026-12-07)."""

    class Wrapper(torch.nn.Module):  # the older layout around the same attention module and weights
        def __init__(self, inner):
            super().__init__()
            self.attention = inner

        def forward(self, *args, **kwargs):
            return self.attention(*args, **kwargs)

    model = make_dinov2()
    if isinstance(getattr(model.encoder.layer[0].attention, "attention", None), torch.nn.Module):
        pytest.skip("this transformers has the older layout itself: every other vision test covers it")
    images = torch.rand(2, 3, 16, 16)
    expected = VisionModel("small", model, Preprocess(image_size=16)).attention_maps(images)
    inner = [layer.attention for layer in model.encoder.layer]
    for layer in model.encoder.layer:
        layer.attention = Wrapper(layer.attention)
    assert VIT_ADAPTER.attention_modules(model) == inner
    maps = VisionModel("small", model, Preprocess(image_size=16)).attention_maps(images)
    torch.testing.assert_close(maps, expected)


def test_seam_rows_match_eager_and_are_bidirectional(make_dinov2):
    model = make_dinov2()
    vision = VisionModel("small", model, Preprocess(image_size=16))
    images = torch.rand(2, 3, 16, 16)
    maps = vision.attention_maps(images)  # (batch, layer, head, query, key)
    reference = _eager_attentions(model, vision.preprocess(images))
    for layer in range(2):
        torch.testing.assert_close(maps[:, layer], reference.attentions[layer], atol=1e-5, rtol=1e-4)
    upper = torch.triu(maps[0, 0, 0], diagonal=1).sum()
    assert upper > 1.0  # bidirectional: a causal mask would make this exactly 0
    run = vision.run(images)
    for index in range(3):
        torch.testing.assert_close(run.hidden[:, index], reference.hidden_states[index], atol=1e-5, rtol=1e-4)


def test_statistics_and_interventions_on_vit(make_dinov2):
    model = make_dinov2()
    vision = VisionModel("small", model, Preprocess(image_size=16))
    images = torch.rand(1, 3, 16, 16)
    run = vision.run(images, spec=wb.CaptureSpec(statistics=("entropy", "max")))
    assert run.capture.row["entropy"].shape == (1, 2, 4, 17)
    baseline = vision.run(images).hidden
    intervened = vision.run(images, interventions=wb.mask_heads([(1, 2)], mode="uniform"))
    torch.testing.assert_close(intervened.hidden[:, :2], baseline[:, :2])  # before block 1's output: unchanged
    assert (intervened.hidden[:, 2] - baseline[:, 2]).abs().max() > 1e-4
    maps = vision.run(images, spec=wb.CaptureSpec(layers=(1,), statistics=(), rows=tuple(range(17))),
                      interventions=wb.mask_heads([(1, 2)], mode="uniform")).capture
    torch.testing.assert_close(maps.rows[5][0, 0, 2], torch.full((17,), 1 / 17))


def _zeroing_edit(layer, d=32, first_token=0):
    """A projection onto nothing: every coordinate removed around a zero mean, so the edited tokens are 0."""
    return ResidualProjection(layer, torch.eye(d), torch.zeros(d), torch.ones(d), first_token=first_token)


def test_residual_edit_changes_only_later_layers(make_dinov2):
    vision = VisionModel("small", make_dinov2(layers=3), Preprocess(image_size=16))
    images = torch.rand(1, 3, 16, 16)
    clean = vision.run(images).hidden
    edited = vision.run(images, residual_edits=[_zeroing_edit(1)]).hidden
    torch.testing.assert_close(edited[:, 0], clean[:, 0])
    assert edited[:, 1].abs().max() == 0
    assert (edited[:, 3] - clean[:, 3]).abs().max() > 1e-4
    after = vision.run(images).hidden  # hooks were removed
    torch.testing.assert_close(after, clean)
    with pytest.raises(ValueError, match="out of range"):
        vision.run(images, layers=[7])


def test_residual_edits_are_data(make_dinov2):
    """The edit keeps the cls token when asked, round-trips through JSON, and a callable is refused."""
    import json

    vision = VisionModel("small", make_dinov2(layers=3), Preprocess(image_size=16))
    images = torch.rand(1, 3, 16, 16)
    clean = vision.run(images).hidden
    edit = _zeroing_edit(2, first_token=1)
    assert repr(edit) == "ResidualProjection(layer=2, rank=32, d=32, first_token=1)"
    again = ResidualProjection.from_dict(json.loads(json.dumps(edit.to_dict())))
    edited = vision.run(images, residual_edits=[again]).hidden
    torch.testing.assert_close(edited[:, 2, 0], clean[:, 2, 0])  # cls token untouched
    assert edited[:, 2, 1:].abs().max() == 0
    with pytest.raises(TypeError, match="ResidualProjection"):
        vision.run(images, residual_edits={1: lambda h: h * 0})
    with pytest.raises(TypeError, match="ResidualProjection"):
        vision.run(images, residual_edits=[lambda h: h * 0])
    with pytest.raises(ValueError, match="hidden state 9"):
        vision.run(images, residual_edits=[_zeroing_edit(9)])


def test_old_vision_import_paths_alias_the_new_modules():
    import workbench.analyses.binding.analysis as analysis
    import workbench.runners.vision as runner
    from workbench.vision import binding
    from workbench.vision import runner as old_runner

    assert binding is analysis and old_runner is runner


def test_hf_vit_model_through_the_adapter():
    from transformers import ViTConfig, ViTModel

    import workbench.seam.attention  # noqa: F401

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
                       patch_size=4)
    config._attn_implementation = "workbench"
    model = ViTModel(config, add_pooling_layer=False).eval()
    vision = VisionModel("vit", model, Preprocess(image_size=16))
    images = torch.rand(1, 3, 16, 16)
    maps = vision.attention_maps(images)
    reference = _eager_attentions(model, vision.preprocess(images))
    torch.testing.assert_close(maps[:, 1], reference.attentions[1], atol=1e-5, rtol=1e-4)


def test_language_model_loader_sends_vision_names_to_the_vision_runner():
    from workbench.models.registry import UnknownModelError

    with pytest.raises(UnknownModelError, match="load_vision_model"):
        wb.load_model("tiny-vit-dino-s0")
