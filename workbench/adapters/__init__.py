"""Family adapters: where a model keeps its attention modules and how many heads it has.

Generic code asks ``adapter_for(model)``; knowledge of one family lives in one small adapter. Analyses
that read inside a model (head outputs, the residual stream) do it through ``watch_head_outputs`` and
``watch_block_inputs`` here, never by hooking a family's modules by name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class ModelShape:
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_positions: int | None
    causal: bool = True

    @property
    def group_size(self) -> int:
        return self.num_heads // self.num_kv_heads

    def kv_head(self, head: int) -> int:
        """The KV head (GQA group) that query head ``head`` reads."""
        return head // self.group_size


class Adapter:
    """Base adapter for HF decoder-only models whose attention modules carry ``layer_idx``."""

    families: tuple[str, ...] = ()

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        found = {}
        for module in model.modules():
            if hasattr(module, "layer_idx") and hasattr(module, "o_proj") and hasattr(module, "q_proj"):
                found.setdefault(int(module.layer_idx), module)
        if not found:
            raise TypeError(
                f"{type(model).__name__}: no attention modules with q_proj/o_proj/layer_idx found; "
                "add an adapter in workbench/adapters/ for this family"
            )
        return [found[i] for i in sorted(found)]

    def output_projection(self, attention_module: nn.Module) -> nn.Module:
        return attention_module.o_proj

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The transformer blocks in order (each takes the residual stream as its first input)."""
        inner = getattr(model, "model", model)
        layers = getattr(inner, "layers", None)
        if layers is None:
            raise TypeError(
                f"{type(model).__name__}: no decoder blocks at model.model.layers (a Llama-style decoder); "
                "add an adapter in workbench/adapters/ for this family"
            )
        return list(layers)

    @contextlib.contextmanager
    def watch_head_outputs(self, model: nn.Module, observe: Callable[[int, Tensor], None]) -> Iterator[None]:
        """For this block, ``observe(layer, z)`` at every forward of every layer, where z (batch, T,
        heads * head_dim) holds the head outputs entering the output projection (head h at columns
        h * head_dim ...). Read only; the hooks are removed on exit, also after an exception."""
        modules = [self.output_projection(m) for m in self.attention_modules(model)]
        with _pre_hooks(modules, lambda layer, args, kwargs: observe(layer, args[0])):
            yield

    @contextlib.contextmanager
    def watch_block_inputs(self, model: nn.Module, observe: Callable[[int, Tensor], None]) -> Iterator[None]:
        """For this block, ``observe(layer, hidden)`` with the residual stream (batch, T, hidden) entering
        every block (``blocks``). Read only; the hooks are removed on exit, also after an exception."""

        def read(layer, args, kwargs):
            observe(layer, args[0] if args else kwargs["hidden_states"])

        with _pre_hooks(self.blocks(model), read):
            yield

    def shape(self, model: nn.Module) -> ModelShape:
        config = model.config
        config = getattr(config, "text_config", None) or config
        heads = config.num_attention_heads
        return ModelShape(
            num_layers=config.num_hidden_layers,
            num_heads=heads,
            num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            max_positions=getattr(config, "max_position_embeddings", None),
        )


@contextlib.contextmanager
def _pre_hooks(modules: list[nn.Module], call: Callable[[int, tuple, dict], None]) -> Iterator[None]:
    """Forward pre-hooks ``call(index, args, kwargs)`` on ``modules`` for one block; removed on exit."""

    def hook(index):
        def pre(module, args, kwargs):
            call(index, args, kwargs)

        return pre

    handles = []
    try:
        for index, module in enumerate(modules):
            handles.append(module.register_forward_pre_hook(hook(index), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


_ADAPTERS: dict[str, Adapter] = {}


def register_adapter(adapter: Adapter) -> Adapter:
    for family in adapter.families:
        _ADAPTERS[family] = adapter
    return adapter


def adapter_for(model: nn.Module) -> Adapter:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in _ADAPTERS:
        return _ADAPTERS[model_type]
    return _DECODER


from workbench.adapters.decoder import DecoderAdapter  # noqa: E402
from workbench.adapters.vit import VitAdapter  # noqa: E402

_DECODER = register_adapter(DecoderAdapter())
VIT_ADAPTER = register_adapter(VitAdapter())
