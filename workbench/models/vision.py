"""Vision model names for the registry: ``dinov2-s14`` and the committed tiny ViTs (``tiny-vit-<objective>-s<seed>``).

Importing this module registers them (``workbench.models.registry`` imports it lazily). Every loader
returns ``(Dinov2Model/ViTModel with the 'workbench' attention, Preprocess)``.
"""

from __future__ import annotations

from pathlib import Path

import workbench.vision.adapter  # noqa: F401  (registers the ViT adapter)
from workbench.models.registry import ModelEntry, register_model

CHECKPOINTS = Path(__file__).resolve().parents[2] / "vit_checkpoints"


def load_dinov2(device, dtype):
    """The embedded DINOv2 (registered by name in ``workbench.models.registry``, which imports this lazily)."""
    from transformers import Dinov2Model

    import workbench.seam.attention  # noqa: F401
    from workbench.models.registry import quiet_loading
    from workbench.vision.convert import ensure_dinov2
    from workbench.vision.runner import Preprocess

    folder = ensure_dinov2()
    with quiet_loading():
        model = Dinov2Model.from_pretrained(folder, attn_implementation="workbench", dtype=dtype or "float32")
    return model.to(device).eval(), Preprocess(image_size=224)


def load_checkpoint(path: Path, device="cpu", dtype=None):
    from workbench.vision.runner import Preprocess
    from workbench.vision.tiny_vit import load_tiny_vit

    model = load_tiny_vit(path)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device), Preprocess(image_size=int(model.config.image_size))


def load_pretrained(name_or_path: str, device="cpu", dtype=None):
    """Any HF ViT-family encoder (model_type dinov2 or vit); normalisation from its image processor if present."""
    from transformers import AutoConfig, AutoModel

    import workbench.seam.attention  # noqa: F401
    from workbench.models.registry import (
        ONLINE_HINT,
        OfflineModelError,
        UnknownModelError,
        hub_kwargs,
        quiet_loading,
    )
    from workbench.vision.adapter import VIT_ADAPTER
    from workbench.vision.runner import Preprocess

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


def _register_checkpoints() -> None:
    for path in sorted(CHECKPOINTS.glob("tiny-vit-*.safetensors")):
        register_model(
            ModelEntry(
                path.stem,
                f"tiny ViT (6 blocks, d=192, 3 heads, 64 px / patch 8) trained here on procedural scenes ({path.name})",
                "vision",
                lambda device, dtype, path=path: load_checkpoint(path, device, dtype),
            )
        )


_register_checkpoints()
