"""Family knowledge stays in the adapters: no module outside ``workbench/adapters/`` hooks a model's
o_proj, reaches ``model.model.layers`` or registers its own forward hooks; analyses read inside a model
through the adapter's ``watch_head_outputs`` / ``watch_block_inputs`` (or measure through the seam)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "workbench", ROOT / "app"]
ALLOWED = {ROOT / "workbench" / "adapters"}
# 18b moves the vision runner's residual hooks into the vision adapter (issue 18); drop it from here then
HOOKS_PENDING: set = set()  # every runner now hooks through its adapter

O_PROJ = re.compile(r"(?<!self)\.o_proj\b")  # a model defining its own o_proj (self.o_proj) is fine
LAYERS = re.compile(r"\.model\.layers\b")
HOOKS = re.compile(r"\.register_forward(_pre)?_hook\b")


def code_without_strings(path: Path) -> str:
    """The source with comments, strings and docstrings blanked (messages may name o_proj)."""
    out = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type in (tokenize.COMMENT, tokenize.STRING) or token.type == getattr(
            tokenize, "FSTRING_MIDDLE", -1
        ):
            out.append(" ")
        else:
            out.append(token.string)
        out.append(" " if token.type != tokenize.OP or token.string != "." else "")
    return re.sub(r"\s*\.\s*", ".", "".join(out))


def offenders(pattern: re.Pattern, skip=frozenset()) -> list[str]:
    found = []
    for folder in SCANNED:
        for path in folder.rglob("*.py"):
            if any(path.is_relative_to(allowed) for allowed in ALLOWED) or path in skip:
                continue
            if pattern.search(code_without_strings(path)):
                found.append(str(path.relative_to(ROOT)))
    return sorted(found)


def test_the_scan_sees_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "h = m.self_attn.o_proj.register_forward_pre_hook(f)  # o_proj\nx = model.model.layers[0]\n"
        'y = "model.model.layers"\nself.o_proj = None\n'
    )
    code = code_without_strings(sample)
    assert O_PROJ.search(code) and LAYERS.search(code) and HOOKS.search(code)
    assert len(O_PROJ.findall(code)) == 1 and len(LAYERS.findall(code)) == 1


def test_no_module_outside_the_adapters_touches_o_proj():
    assert offenders(O_PROJ) == []


def test_no_module_outside_the_adapters_reaches_model_model_layers():
    assert offenders(LAYERS) == []


def test_no_module_outside_the_adapters_registers_forward_hooks():
    assert offenders(HOOKS, skip=HOOKS_PENDING) == []


def test_adapter_watches_are_removed_on_exit_even_after_an_error(tiny):
    adapter, hf = tiny.adapter, tiny.hf
    seen = []
    with adapter.watch_head_outputs(hf, lambda layer, z: seen.append((layer, tuple(z.shape)))):
        tiny.run(tiny.encode("abc"))
    shape = tiny.shape
    assert seen == [(layer, (1, 3, shape.num_heads * shape.head_dim)) for layer in range(shape.num_layers)]
    blocks = []
    with pytest.raises(RuntimeError, match="boom"):
        with adapter.watch_block_inputs(hf, lambda layer, hidden: blocks.append(layer)):
            tiny.run(tiny.encode("abc"))
            raise RuntimeError("boom")
    assert blocks == list(range(shape.num_layers))
    seen.clear()
    blocks.clear()
    tiny.run(tiny.encode("abc"))
    assert seen == [] and blocks == []
    modules = adapter.blocks(hf) + [adapter.output_projection(m) for m in adapter.attention_modules(hf)]
    assert all(not m._forward_pre_hooks for m in modules)


def test_blocks_of_a_model_without_decoder_layers_name_the_fix():
    from workbench.adapters import Adapter

    with pytest.raises(TypeError, match="add an adapter"):
        Adapter().blocks(torch.nn.Linear(2, 2))
