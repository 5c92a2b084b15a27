"""Llama-style decoders (Llama, Mistral, Qwen2/3, SmolLM2): ``model.model.layers[i].self_attn``."""

from __future__ import annotations

from torch import nn

from workbench.adapters import Adapter


def unwrap(module: nn.Module) -> nn.Module:
    """A TransformerBridge swaps modules for wrappers that keep the HF module as ``original_component``."""
    while getattr(module, "original_component", None) is not None:
        module = module.original_component
    return module


class DecoderAdapter(Adapter):
    families = ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "olmo2")

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        inner = getattr(model, "model", model)
        layers = getattr(inner, "layers", None)
        if layers is not None and all(hasattr(layer, "self_attn") for layer in layers):
            return [unwrap(layer.self_attn) for layer in layers]
        return super().attention_modules(model)
