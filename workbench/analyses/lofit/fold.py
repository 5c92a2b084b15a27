"""Fold LoFiT offsets into o_proj's bias, for export to plain transformers.

o_proj(z + v) = W_o (z + v) = W_o z + W_o[:, slice(head)] v, so the offsets of all selected heads of a
layer become one bias vector b_l = sum_h W_o[:, h*d:(h+1)*d] v_h of size hidden. Llama-style configs
have no o_proj bias by default (``attention_bias=False``); the export sets ``attention_bias=True``
(which gives q/k/v/o projections a bias), writes zeros for q/k/v and for the o_proj of untouched layers,
and b_l where offsets exist. The exported folder loads with ``AutoModelForCausalLM.from_pretrained``
and needs neither the workbench nor its seam.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch

from workbench.analyses.lofit.artifact import LofitArtifact
from workbench.runners.hf import Model
from workbench.seam.spec import SpecError


def _plain(name: str) -> str:
    return name.replace("._original_component", "").replace("_original_component.", "")


def folded_biases(model: Model, artifact: LofitArtifact) -> dict[int, torch.Tensor]:
    """layer -> o_proj bias (hidden,) equal to adding the artifact's offsets before o_proj."""
    artifact.check_model(model)
    modules = model.adapter.attention_modules(model.hf)
    d = model.shape.head_dim
    biases: dict[int, torch.Tensor] = {}
    for index, (layer, head) in enumerate(artifact.heads):
        o_proj = model.adapter.output_projection(modules[layer])
        weight = o_proj.weight.detach()
        term = weight[:, head * d : (head + 1) * d].to(torch.float64) @ artifact.offsets[index].to(
            torch.float64
        )
        biases[layer] = biases.get(layer, 0) + term
    return {layer: bias.to(torch.float32) for layer, bias in biases.items()}


@contextlib.contextmanager
def folded(model: Model, artifact: LofitArtifact):
    """Run ``model`` with the offsets folded into o_proj biases for this block (restored on exit)."""
    modules = model.adapter.attention_modules(model.hf)
    saved = []
    try:
        for layer, bias in folded_biases(model, artifact).items():
            o_proj = model.adapter.output_projection(modules[layer])
            saved.append((o_proj, o_proj.bias))
            existing = o_proj.bias.detach() if o_proj.bias is not None else 0
            o_proj.bias = torch.nn.Parameter((existing + bias).to(o_proj.weight), requires_grad=False)
        yield model
    finally:
        for o_proj, bias in saved:
            o_proj.bias = bias


def export_folded(model: Model, artifact: LofitArtifact, folder: Path) -> Path:
    """Write a transformers checkpoint (config, weights, tokenizer) with the offsets folded into biases."""
    return save_checkpoint(folded_checkpoint(model, artifact), model.tokenizer, folder)


def folded_checkpoint(model: Model, artifact: LofitArtifact):
    """A new transformers model (``attention_bias=True``) equal to ``model`` with the offsets folded into
    o_proj biases; nothing written (``save_checkpoint`` writes it), so a model that cannot take a bias
    fails before any file appears."""
    config = copy.deepcopy(model.hf.config)
    if not hasattr(config, "attention_bias"):
        raise SpecError(
            f"{type(model.hf).__name__} has no `attention_bias` config switch, so an o_proj bias cannot be "
            "exported; apply the artifact as interventions instead"
        )
    names = {id(module): _plain(name) for name, module in model.hf.named_modules()}
    modules = model.adapter.attention_modules(model.hf)
    biases = folded_biases(model, artifact)
    # a TransformerLens bridge wraps modules in place (``..._original_component...`` names): map back
    state = {_plain(key): value for key, value in model.hf.state_dict().items()}
    for layer, attention in enumerate(modules):
        prefix = names[id(attention)]
        for projection in ("q_proj", "k_proj", "v_proj", "o_proj"):
            linear = getattr(attention, projection)
            key = f"{prefix}.{projection}.bias"
            current = linear.bias.detach() if linear.bias is not None else None
            if current is None:
                current = torch.zeros(linear.weight.shape[0], dtype=linear.weight.dtype)
            if projection == "o_proj" and layer in biases:
                current = current + biases[layer].to(current)
            state[key] = current
    config.attention_bias = True
    exported = type(model.hf)(config)
    wanted = exported.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise SpecError(f"cannot export: the model's weights lack {missing[:5]}")
    exported.load_state_dict({key: state[key] for key in wanted}, strict=True)
    if getattr(config, "tie_word_embeddings", False):
        exported.tie_weights()
    return exported


def save_checkpoint(exported, tokenizer, folder: Path) -> Path:
    """Write ``exported`` (``folded_checkpoint``) and ``tokenizer`` (if any) as a transformers folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    exported.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
