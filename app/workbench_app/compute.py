"""The only places the dashboard runs a model, each behind a button: exact attention tiles and
intervention comparisons. Models load once per server process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from workbench_app.data import Unavailable


@st.cache_resource(show_spinner="loading the model ...", max_entries=2)
def model(name: str):
    from workbench.devices import runtime_from_environment
    from workbench.runners.hf import load_model

    try:
        where = runtime_from_environment()  # `workbench app --device/--dtype`, else auto
        return load_model(name, device=where.device, dtype=where.dtype)
    except Exception as error:
        raise Unavailable(f"cannot load model {name!r}: {error}") from None


def input_ids(model_name: str, tokens: list[str], input_hash: str) -> torch.Tensor:
    """The run's input ids, rebuilt from its stored tokens and checked against the run's input hash."""
    from workbench.store.captures import hash_ids

    loaded = model(model_name)
    ids = loaded.tokenizer.convert_tokens_to_ids(list(tokens))
    if any(i is None for i in ids):
        raise Unavailable("the stored tokens are not in this model's vocabulary; cannot rebuild the input")
    ids = torch.tensor([ids], dtype=torch.long)
    if hash_ids(ids) != input_hash:
        raise Unavailable(
            "the stored tokens do not reproduce this run's input (hash mismatch), so an exact tile would "
            "describe a different input; re-capture the text with `workbench capture`"
        )
    return ids


def exact_rows(
    model_name: str, tokens: list[str], input_hash: str, layer: int, head: int, queries: list[int]
) -> np.ndarray:
    """Exact probability rows (len(queries), T) of one head, recomputed through the seam."""
    from workbench.seam.spec import CaptureSpec

    loaded = model(model_name)
    ids = input_ids(model_name, tokens, input_hash)
    spec = CaptureSpec(layers=(layer,), heads=(head,), statistics=(), rows=tuple(queries))
    spec.validate_for(loaded.shape.num_layers, loaded.shape.num_heads)
    _, capture = loaded.run(ids, spec)
    return np.stack([capture.rows[q][0, 0, 0].float().numpy() for q in queries])


@dataclass
class Comparison:
    baseline_text: str
    intervened_text: str
    baseline_tokens: list[str]
    intervened_tokens: list[str]
    metrics: dict
    heads: object  # DataFrame: per intervened head, statistics with and without


def compare(model_name: str, prompt: str, interventions: list, max_new_tokens: int, chat: bool) -> Comparison:
    """Greedy answers with and without ``interventions``, plus prompt-level metrics."""
    import pandas as pd

    from workbench.seam.interventions import validate_interventions
    from workbench.seam.spec import CaptureSpec

    loaded = model(model_name)
    validate_interventions(interventions, loaded.shape.num_layers, loaded.shape.num_heads)
    ids = loaded.encode(prompt, chat=chat)
    base = loaded.generate(ids, max_new_tokens=max_new_tokens)
    edit = loaded.generate(ids, max_new_tokens=max_new_tokens, interventions=interventions)
    spec = CaptureSpec(statistics=("sink_mass", "entropy", "mean_distance"))
    base_logits, base_capture = loaded.run(ids, spec)
    edit_logits, edit_capture = loaded.run(ids, spec, interventions)
    base_logp = torch.log_softmax(base_logits[0].double(), -1)
    edit_logp = torch.log_softmax(edit_logits[0].double(), -1)
    kl = (base_logp.exp() * (base_logp - edit_logp)).sum(-1)  # (T,) KL(baseline || intervened)
    targets = ids[0, 1:].to(base_logp.device)
    nll_base = (
        -base_logp[:-1].gather(-1, targets[:, None]).mean() if len(targets) else torch.tensor(float("nan"))
    )
    nll_edit = (
        -edit_logp[:-1].gather(-1, targets[:, None]).mean() if len(targets) else torch.tensor(float("nan"))
    )
    agree = (base_logp.argmax(-1) == edit_logp.argmax(-1)).double().mean()
    same_prefix = 0
    for a, b in zip(base.new_ids.tolist(), edit.new_ids.tolist(), strict=False):
        if a != b:
            break
        same_prefix += 1
    metrics = {
        "KL(baseline || intervened), last prompt token": float(kl[-1]),
        "KL, mean over prompt tokens": float(kl.mean()),
        "top-1 agreement over prompt tokens": float(agree),
        "prompt NLL, baseline": float(nll_base),
        "prompt NLL, intervened": float(nll_edit),
        "generated tokens identical before divergence": same_prefix,
        "generated tokens, baseline / intervened": f"{len(base.new_ids)} / {len(edit.new_ids)}",
    }
    base_table = base_capture.head_table()
    edit_table = edit_capture.head_table()
    touched = sorted({(i.layer, i.head) for i in interventions})
    rows = []
    for layer, head in touched:
        b = base_table[(base_table.layer == layer) & (base_table["head"] == head)].iloc[0]
        e = edit_table[(edit_table.layer == layer) & (edit_table["head"] == head)].iloc[0]
        row = {"layer": layer, "head": head}
        for name in ("sink_mass", "entropy", "mean_distance"):
            row[f"{name} baseline"] = float(b[name])
            row[f"{name} intervened"] = float(e[name])
        rows.append(row)
    tokenizer = loaded.tokenizer
    return Comparison(
        base.text,
        edit.text,
        tokenizer.convert_ids_to_tokens(base.new_ids.tolist()),
        tokenizer.convert_ids_to_tokens(edit.new_ids.tolist()),
        metrics,
        pd.DataFrame(rows),
    )
