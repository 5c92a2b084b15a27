"""Adapter for ViT encoders in transformers' layout (Dinov2Model ``encoder.layer[i].attention``, ViTModel ``layers[i]``).

Their attention modules call ``ALL_ATTENTION_FUNCTIONS`` with ``is_causal = False`` and carry no
``layer_idx``; ``instrument`` sets the layer index from this adapter's order, and the seam reads
``module.is_causal``, so attention stays bidirectional.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator

from torch import Tensor, nn

from workbench.adapters import Adapter, ModelShape


class VitAdapter(Adapter):
    families = ("dinov2", "vit")

    def backbone(self, model: nn.Module) -> nn.Module:
        """The module holding ``embeddings`` and the blocks (the model itself or its ``base_model``)."""
        for candidate in (model, getattr(model, "base_model", None)):
            if candidate is not None and hasattr(candidate, "embeddings") and (
                hasattr(candidate, "encoder") or hasattr(candidate, "layers")
            ):
                return candidate
        raise TypeError(f"{type(model).__name__}: no embeddings/encoder found; is this a ViT encoder?")

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """Blocks in order: ``encoder.layer`` (Dinov2Model) or ``layers`` (ViTModel in transformers 5.x)."""
        backbone = self.backbone(model)
        encoder = getattr(backbone, "encoder", None)
        return list(encoder.layer if encoder is not None else backbone.layers)

    def embeddings(self, model: nn.Module) -> nn.Module:
        return self.backbone(model).embeddings

    def residual_modules(self, model: nn.Module) -> list[nn.Module]:
        """Modules whose outputs are the hidden states: index 0 the embeddings, ``l`` the output of block ``l``
        (before the final norm), as ``Dinov2Model(output_hidden_states=True)`` numbers them."""
        return [self.embeddings(model), *self.blocks(model)]

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        """The modules that call the attention interface: ``block.attention`` (transformers 5.2x), or its inner
        self-attention where the block's ``attention`` wraps one (``Dinov2Attention(attention=Dinov2SelfAttention,
        output=...)`` up to at least transformers 5.17, as on the lent GPU: instrumenting the wrapper there left
        every layer uncaptured)."""
        modules = []
        for block in self.blocks(model):
            inner = getattr(block.attention, "attention", None)
            modules.append(inner if isinstance(inner, nn.Module) else block.attention)
        return modules

    @contextlib.contextmanager
    def edit_residuals(
        self, model: nn.Module, indices: Collection[int], edit: Callable[[int, Tensor], Tensor | None]
    ) -> Iterator[None]:
        """For this block, ``edit(index, hidden)`` on hidden state ``index`` (``residual_modules``) for every
        index in ``indices``: hidden (batch, tokens, hidden); a returned tensor replaces it, None keeps it.
        The hooks are removed on exit, also after an exception."""
        modules = self.residual_modules(model)

        def hook_for(index):
            def hook(module, inputs, output):
                tensor = output[0] if isinstance(output, tuple) else output
                new = edit(index, tensor)
                if new is None:
                    return None
                return (new, *output[1:]) if isinstance(output, tuple) else new

            return hook

        handles = []
        try:
            for index in sorted(set(indices)):
                handles.append(modules[index].register_forward_hook(hook_for(index)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def shape(self, model: nn.Module) -> ModelShape:
        config = model.config
        heads = config.num_attention_heads
        return ModelShape(
            num_layers=config.num_hidden_layers,
            num_heads=heads,
            num_kv_heads=heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            max_positions=None,
            causal=False,
        )

