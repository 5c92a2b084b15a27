"""Llama-style decoders (Llama, Mistral, Qwen2/3, SmolLM2): ``model.model.layers[i].self_attn``."""

from __future__ import annotations

from torch import nn

from workbench.adapters import Adapter


class DecoderAdapter(Adapter):
    families = ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "olmo2")

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        inner = getattr(model, "model", model)
        layers = getattr(inner, "layers", None)
        if layers is not None and all(hasattr(layer, "self_attn") for layer in layers):
            # a TransformerBridge swaps self_attn for a wrapper that delegates to ``original_component``
            return [getattr(layer.self_attn, "original_component", None) or layer.self_attn for layer in layers]
        return super().attention_modules(model)
