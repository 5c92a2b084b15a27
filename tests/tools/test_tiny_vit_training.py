"""Tiny ViTs: the training tool's module is a Dinov2Model; shipped checkpoints load; the training script runs.

The training is a tool outside the library (``tools/train_tiny_vit.py``, ``tools/tiny_vit_model.py``); the
checkpoints are package data read by ``workbench.models.vision``.
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from tiny_vit_model import TinyViT, save_checkpoint, tiny_config_dict  # noqa: E402

from workbench.models.vision import checkpoints_dir, load_tiny_vit, read_metadata  # noqa: E402

CHECKPOINTS = checkpoints_dir()


def test_tiny_vit_equals_dinov2model(tmp_path):
    model = TinyViT(tiny_config_dict(num_hidden_layers=2)).eval()
    model.half().float()  # the checkpoint is fp16: compare on the rounded weights
    path = save_checkpoint(model, tmp_path / "t.safetensors", {"objective": "test"})
    hf = load_tiny_vit(path)
    for side in (64, 32):  # 32 px: both interpolate the position table the same way
        pixels = torch.randn(2, 3, side, side)
        with torch.no_grad():
            ours, states = model(pixels, hidden=True)
            theirs = hf(pixel_values=pixels, output_hidden_states=True)
        torch.testing.assert_close(ours, theirs.last_hidden_state, atol=2e-5, rtol=1e-4)
        for a, b in zip(states, theirs.hidden_states, strict=True):
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    random = load_tiny_vit(path, random_init=True)
    assert not torch.allclose(random.embeddings.position_embeddings, hf.embeddings.position_embeddings)


def test_committed_checkpoints():
    paths = sorted(CHECKPOINTS.glob("tiny-vit-*.safetensors"))
    assert CHECKPOINTS.is_relative_to(Path(__import__("workbench").__file__).parent)  # package data
    objectives = {read_metadata(p)["objective"] for p in paths}
    assert objectives == {"supervised", "mae", "dino"}
    for path in paths:
        assert path.stat().st_size <= 12 * 2**20
        meta = read_metadata(path)
        # made before the training left the library (now `python3 tools/train_tiny_vit.py ...`)
        assert meta["command"].startswith("PYTHONPATH=. python3 -m workbench.vision.train_tiny")
        assert f"--steps {meta['steps']}" in meta["command"] and f"--seed {meta['seed']}" in meta["command"]
        assert meta["steps"] > 100 and ("H100" in meta["device"] or "H200" in meta["device"])
        _assert_trained(meta)
    from workbench.runners.vision import load_vision_model

    model = load_vision_model("tiny-vit-dino-s0")
    assert (model.shape.num_layers, model.shape.num_heads, model.patch_size, model.grid) == (6, 3, 8, 8)


def _assert_trained(meta):
    """The committed checkpoint actually learned (the failure modes of the first recipes, docs/results/8-binding.md
    section 6: supervised loss at the label prior, DINO teacher at the uniform output, MAE cut short)."""
    assert meta["stopped_by_clock"] is False and meta["steps"] == meta["schedule_steps"], "schedule cut short"
    final = meta["final"]
    assert final["step"] == meta["steps"]
    if meta["objective"] == "supervised":
        # per-patch class loss well below the batch's class-share cross-entropy, accuracy above the majority rate
        assert final["loss"] < final["chance_loss"] - 0.2, final
        assert final["accuracy"] > final["chance_accuracy"] + 0.01, final
        assert final["object_patch_accuracy"] > 0.05, final
    elif meta["objective"] == "dino":
        # neither uniform collapse (per-sample teacher entropy near ln K) nor one-prototype collapse (batch mean near 0)
        assert final["teacher_entropy"] < 0.75 * final["uniform_entropy"], final
        assert final["teacher_mean_entropy"] > 0.5 * final["uniform_entropy"], final
    else:
        assert final["loss"] < 0.55, final  # the 41-second checkpoints ended at 0.66-0.67


@pytest.mark.parametrize("objective", ["supervised", "mae", "dino"])
def test_training_script_runs_one_step(tmp_path, objective):
    from train_tiny_vit import main

    main(
        [
            "--objective",
            objective,
            "--seed",
            "3",
            "--steps",
            "1",
            "--batch",
            "2",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    path = tmp_path / f"tiny-vit-{objective}-s3.safetensors"
    meta = read_metadata(path)
    assert (meta["objective"], meta["steps"], meta["batch"]) == (objective, 1, 2)
    assert load_tiny_vit(path).config.hidden_size == 192


def test_supervised_recipe_learns_a_fixed_batch():
    """40 steps of the supervised recipe (its wrapper, loss, labels, lr and betas) on 8 fixed scenes must cut the
    loss by 40 %: fails for labels the encoder cannot fit, a loss on the wrong tensor or a dead optimiser."""
    from train_tiny_vit import RECIPES, TRAIN_SCENES, make_optimizer

    from workbench.analyses.binding.scenes import make_scenes

    torch.manual_seed(0)
    model = RECIPES["supervised"][0](TinyViT(tiny_config_dict()))
    optimizer = make_optimizer(model, "supervised")
    scenes = make_scenes(8, seed=10**9 + 7, config=TRAIN_SCENES)
    generator = torch.Generator().manual_seed(0)
    losses, infos = [], []
    for _ in range(40):
        loss, info = model.loss(scenes, generator, 0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        infos.append(info)
    first, last = losses[0], sum(losses[-5:]) / 5
    assert last < 0.6 * first and last < infos[-1]["chance_loss"], (first, last, infos[-1])
    assert infos[-1]["accuracy"] > infos[-1]["chance_accuracy"], infos[-1]
