"""Head masking as an intervention, and the causal check of retrieval heads.

Modes: ``uniform`` (attention uniform over the visible keys, as Wu et al. do), ``zero`` (head output
zeroed) and ``mean`` (head output replaced by its mean over a reference set). Scope: prefill, decode
or both. The causal check compares NIAH success with no mask, the top-K heads masked, and K random
heads from outside the top ``exclude_top`` for several seeds, on runs not used for detection.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pandas as pd
import torch

from workbench.analyses.heads import top_heads
from workbench.analyses.retrieval.haystack import Haystack, PromptBuilder
from workbench.analyses.retrieval.niah import (
    BATCH_SIZE,
    grid_prompts,
    resolve_inputs,
    run_conditions,
    run_prompts,
)
from workbench.seam.interventions import mask_heads
from workbench.seam.spec import SpecError

MASK_MODES = ("uniform", "zero", "mean")


def head_output_means(model, inputs: Sequence[torch.Tensor]) -> dict[tuple[int, int], torch.Tensor]:
    """Mean output z of every query head (the slice entering o_proj) over all tokens of ``inputs``."""
    shape = model.shape
    modules = model.adapter.attention_modules(model.hf)
    # accumulated on the model's device (no copy to the CPU per layer call); float64 against drift
    sums = [torch.zeros(shape.num_heads * shape.head_dim, dtype=torch.float64, device=model.device) for _ in modules]
    count = [0]
    handles = []

    def hook_for(layer):
        def hook(module, args):
            z = args[0].detach().to(torch.float64)
            sums[layer] += z.reshape(-1, z.shape[-1]).sum(0)
            if layer == 0:
                count[0] += z.shape[0] * z.shape[1]

        return hook

    try:
        for layer, module in enumerate(modules):
            handles.append(module.o_proj.register_forward_pre_hook(hook_for(layer)))
        for ids in inputs:
            model.run(ids)
    finally:
        for handle in handles:
            handle.remove()
    d = shape.head_dim
    return {
        (layer, head): (sums[layer][head * d : (head + 1) * d] / max(1, count[0])).to(torch.float32).cpu()
        for layer in range(shape.num_layers)
        for head in range(shape.num_heads)
    }


def reference_means(model, haystack: Haystack, length: int = 512, count: int = 2):
    """Head output means over ``count`` haystack windows (no needle) taken from past the NIAH prefix."""
    builder = PromptBuilder(model, haystack, chat=False)
    ids = builder.tokens(length * (2 * count + 3))
    windows = []
    for index in range(count):
        start = min(len(ids) - length, (index + 1) * length * 2)
        if start < 0:
            start, length = 0, len(ids)
        windows.append(torch.tensor(ids[start : start + length]))
    return head_output_means(model, windows)


def build_mask(model, heads, mode: str = "uniform", scope: str = "decode", means=None, haystack=None):
    """Interventions that knock out ``heads`` ((layer, head) pairs)."""
    if mode not in MASK_MODES:
        raise SpecError(f"unknown mask mode {mode!r}; choose one of {MASK_MODES}")
    heads = [(int(layer), int(head)) for layer, head in heads]
    if mode == "mean" and means is None:
        if haystack is None:
            raise SpecError("mean masking needs head means (means=...) or a haystack to compute them from")
        means = reference_means(model, haystack)
    return mask_heads(heads, mode=mode, scope=scope, means=means)


def random_heads(shape, k: int, seed: int, exclude: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """K distinct (layer, head) pairs drawn uniformly from the heads not in ``exclude``."""
    excluded = {(int(a), int(b)) for a, b in exclude}
    pool = [(layer, head) for layer in range(shape.num_layers) for head in range(shape.num_heads)
            if (layer, head) not in excluded]
    if k > len(pool):
        raise SpecError(f"cannot draw {k} random heads: only {len(pool)} heads lie outside the excluded {len(excluded)}")
    return sorted(random.Random(seed).sample(pool, k))


def held_out_check(detection_params: dict, needles, depths) -> dict:
    """Which needles and depths of the validation grid were also used for detection."""
    used_needles = {n.get("needle") for n in detection_params.get("needles", []) if isinstance(n, dict)}
    used_depths = {float(d) for d in detection_params.get("depths", [])}
    shared_needles = sorted(n.needle for n in needles if n.needle in used_needles)
    shared_depths = sorted(float(d) for d in depths if float(d) in used_depths)
    return {"shared_needles": shared_needles, "shared_depths": shared_depths,
            "held_out": not shared_needles and not shared_depths, "known": bool(detection_params)}


def causal_check(
    model,
    heads: pd.DataFrame,
    haystack=None,
    needles=None,
    lengths: Sequence[int] = (600, 900),
    depths: Sequence[float] = (10, 30, 60, 90),
    *,
    top_k: Sequence[int] = (10,),
    seeds: Sequence[int] = (0, 1, 2),
    exclude_top: int = 50,
    mode: str = "uniform",
    scope: str = "decode",
    chat: bool | None = None,
    max_new_tokens: int = 50,
    progress: bool = True,
    return_runs: bool = False,
    on_condition=None,
    batch_size: int = BATCH_SIZE,
):
    """NIAH success with no mask, the top-K heads masked, and K random heads (outside the top
    ``exclude_top``) for each seed. Default needles are the built-in held-out set.

    Returns one row per condition: ``condition, k, seed, success_rate, mean_rouge_recall, num_runs,
    drop`` (drop = baseline success - success), with ``attrs["held_out"]`` saying whether the runs share
    needles or depths with the detection grid recorded in ``heads.attrs["params"]``. ``on_condition``
    receives the partial results after each condition (see ``run_conditions``).
    """
    haystack, needles = resolve_inputs(haystack, needles, "heldout")
    builder = PromptBuilder(model, haystack, chat=chat)
    prompts = grid_prompts(builder, needles, lengths, depths)
    means = reference_means(model, haystack) if mode == "mean" else None
    ranking = top_heads(heads, len(heads))
    conditions: list[tuple[str, int, int | None, list]] = [("none", 0, None, [])]
    for k in top_k:
        conditions.append((f"top-{k}", k, None, ranking[:k]))
        for seed in seeds:
            conditions.append((f"random-{k}", k, seed, random_heads(model.shape, k, seed, ranking[:exclude_top])))
    labelled = [(name if seed is None else f"{name} seed {seed}",
                 build_mask(model, chosen, mode, scope, means=means) if chosen else [],
                 {"condition": name, "k": k, "seed": seed, "heads": ";".join(f"{a}.{b}" for a, b in chosen)})
                for name, k, seed, chosen in conditions]
    table, runs = run_conditions(model, prompts, labelled, max_new_tokens=max_new_tokens, progress=progress,
                                 on_condition=on_condition, batch_size=batch_size)
    table = table[["condition", "k", "seed", "success_rate", "mean_rouge_recall", "num_runs", "heads", "drop"]]
    table.attrs["params"] = {
        "mode": mode, "scope": scope, "exclude_top": exclude_top, "seeds": list(seeds), "top_k": list(top_k),
        "lengths": [int(x) for x in lengths], "depths": [float(x) for x in depths],
        "needles": [n.to_dict() for n in needles], "haystack": haystack.source,
    }
    table.attrs["held_out"] = held_out_check(heads.attrs.get("params", {}) or {}, needles, depths)
    return (table, runs.drop(columns="heads")) if return_runs else table


def summarise_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per K: top-K drop, and the mean / min / max drop over the random seeds."""
    out = []
    for k in sorted(set(table.k) - {0}):
        top = table[(table.condition == f"top-{k}")]
        rand = table[(table.condition == f"random-{k}")]
        out.append({
            "k": k,
            "top_drop": float(top["drop"].iloc[0]),
            "random_drop_mean": float(rand["drop"].mean()),
            "random_drop_max": float(rand["drop"].max()),
            "random_drop_min": float(rand["drop"].min()),
        })
    return pd.DataFrame(out)


def per_run_seed(seed: int, draw: int, run: int) -> int:
    """The seed of run ``run``'s random heads in draw ``draw`` (distinct for every (seed, draw, run))."""
    return seed * 1_000_000 + draw * 10_000 + run


def fresh_random_runs(
    model,
    heads: pd.DataFrame,
    haystack=None,
    needles=None,
    lengths: Sequence[int] = (600, 900),
    depths: Sequence[float] = (10, 30, 60, 90),
    *,
    k: int = 10,
    draws: Sequence[int] = (0,),
    seed: int = 0,
    exclude_top: int = 100,
    mode: str = "uniform",
    scope: str = "decode",
    chat: bool | None = None,
    max_new_tokens: int = 50,
    progress: bool = True,
    on_run=None,
) -> pd.DataFrame:
    """The random control as Wu et al.'s repository draws it: every run gets its own K random heads from
    outside the top ``exclude_top`` (a fresh set per run), instead of one fixed set per seed for the whole
    grid (``causal_check``). Each (draw, run) masks ``random_heads(shape, k, per_run_seed(seed, draw, run))``.

    Returns the per-run table (one row per run and draw: the NIAH run's fields, ``draw``, ``run``,
    ``heads``). No baseline: pair it with ``causal_check``'s ``none`` runs of the same grid. ``on_run(rows)``
    sees the finished rows after every run (a long job can save as it goes).
    """
    haystack, needles = resolve_inputs(haystack, needles, "heldout")
    builder = PromptBuilder(model, haystack, chat=chat)
    prompts = grid_prompts(builder, needles, lengths, depths)
    means = reference_means(model, haystack) if mode == "mean" else None
    excluded = top_heads(heads, len(heads))[:exclude_top]
    rows: list[dict] = []
    for draw in draws:
        for run, prompt in enumerate(prompts):
            chosen = random_heads(model.shape, k, per_run_seed(seed, draw, run), excluded)
            mask = build_mask(model, chosen, mode, scope, means=means)
            result = run_prompts(model, [prompt], interventions=mask, max_new_tokens=max_new_tokens, progress=False,
                                 description=f"fresh draw {draw} run {run}")
            row = result.runs.iloc[0].to_dict()
            rows.append({**{key: (v.item() if hasattr(v, "item") else v) for key, v in row.items()},
                         "condition": f"fresh-random-{k}", "k": k, "draw": draw, "run": run, "seed": seed,
                         "exclude_top": exclude_top, "heads": ";".join(f"{a}.{b}" for a, b in chosen)})
            if on_run is not None:
                on_run(rows)
            if progress:
                print(f"fresh draw {draw} run {run}: success {row['success']}", flush=True)
    return pd.DataFrame(rows)
