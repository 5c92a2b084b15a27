"""LoFiT training: step 1 learns per-head scales A and ranks heads by ||A||; step 2 learns offsets v.

Both steps run ``model.hf`` inside the seam with ``HeadOutputAffine`` interventions that hold the
trainable tensors, so the gradient reaches A or v through the seam's PyTorch path while every model
weight stays frozen. Optimiser and schedule follow the HF Trainer defaults the paper's code used
(AdamW, no weight decay, linear decay to zero).
"""

from __future__ import annotations

import math
import random
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import pandas as pd
import torch

from workbench.analyses.heads import make_head_table
from workbench.analyses.lofit.artifact import LofitArtifact
from workbench.analyses.lofit.data import Completion, MCQuestion
from workbench.analyses.lofit.losses import (
    completion_loss,
    dpo_loss,
    encode_pair,
    make_batch,
    pad_id,
    sequence_logprobs,
)
from workbench.runners.hf import Model
from workbench.seam.interventions import HeadOutputAffine
from workbench.seam.spec import SpecError

# Spec §5, the Llama-2-7B rows (TruthfulQA and CLUTRR): (step-1 lr, L1 lambda, step-2 lr)
DEFAULTS = {"truthfulqa": (5e-3, 5e-4, 1e-2), "clutrr": (5e-4, 5e-3, 1e-2)}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LoFiT step. ``steps`` caps the optimiser steps (None: all epochs)."""

    task: str
    lr: float
    l1: float = 0.0
    epochs: int = 5
    steps: int | None = None
    batch_size: int = 8
    beta: float = 0.5  # DPO temperature
    max_prompt: int = 128
    max_target: int = 128
    init_std: float = 1e-3
    seed: int = 0
    eval_every: int | None = None  # validate every N steps (None: after every epoch)

    @classmethod
    def defaults(cls, task: str, step: int, **overrides) -> TrainConfig:
        if task not in DEFAULTS:
            raise SpecError(f"unknown task {task!r}; choose one of {sorted(DEFAULTS)}")
        lr_scale, l1, lr_offset = DEFAULTS[task]
        base = cls(task=task, lr=lr_scale, l1=l1) if step == 1 else cls(task=task, lr=lr_offset)
        if task == "clutrr":  # SFT: one max length of 400 tokens, prompt and completion together
            base = replace(base, max_prompt=384, max_target=16)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


# --- examples -----------------------------------------------------------------------------------


@dataclass
class Example:
    """One training unit: a DPO pair (chosen and rejected share the prompt) or one completion."""

    prompt: list[int]
    target: list[int]
    rejected: list[int] | None = None
    reference: tuple[float, float] | None = None  # reference log p of (chosen, rejected)


def make_examples(model: Model, items: Sequence, config: TrainConfig) -> list[Example]:
    examples = []
    for item in items:
        if isinstance(item, MCQuestion):
            for prompt, chosen, rejected in item.preference_pairs():
                p, c = encode_pair(
                    model, prompt, chosen, max_prompt=config.max_prompt, max_target=config.max_target
                )
                _, r = encode_pair(
                    model, prompt, rejected, max_prompt=config.max_prompt, max_target=config.max_target
                )
                examples.append(Example(p, c, r))
        elif isinstance(item, Completion):
            p, t = encode_pair(
                model,
                item.prompt,
                item.completion,
                max_prompt=config.max_prompt,
                max_target=config.max_target,
                eos=True,
            )
            examples.append(Example(p, t))
        else:
            raise SpecError(f"not a LoFiT item: {item!r}")
    if not examples:
        raise SpecError("no training examples (a TruthfulQA question needs at least one incorrect answer)")
    return examples


def _pairs(examples: Sequence[Example]):
    """Rows of a DPO batch: every chosen sequence, then every rejected one."""
    return [(e.prompt, e.target) for e in examples] + [(e.prompt, e.rejected) for e in examples]


_REFERENCE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # hf model -> {pair ids: logps}


def _reference_key(example: Example) -> tuple:
    return (tuple(example.prompt), tuple(example.target), tuple(example.rejected))


@torch.no_grad()
def fill_reference(model: Model, examples: Sequence[Example], batch_size: int = 16) -> None:
    """Reference (frozen base model) log-probs of each DPO pair, computed once per process and model."""
    cache = _REFERENCE_CACHE.setdefault(model.hf, {})
    todo = [e for e in examples if e.rejected is not None and e.reference is None]
    for example in todo:
        example.reference = cache.get(_reference_key(example))
    todo = [e for e in todo if e.reference is None]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        logp, _ = sequence_logprobs(model, make_batch(_pairs(chunk), pad_id(model)))
        for index, example in enumerate(chunk):
            example.reference = (float(logp[index]), float(logp[len(chunk) + index]))
            cache[_reference_key(example)] = example.reference


def task_loss(model: Model, examples: Sequence[Example], interventions, config: TrainConfig):
    """(loss, extra metric): DPO for pairs (metric: reward accuracy), completion CE otherwise (metric: loss)."""
    if examples[0].rejected is not None:
        logp, _ = sequence_logprobs(model, make_batch(_pairs(examples), pad_id(model)), interventions)
        n = len(examples)
        reference = torch.tensor([e.reference for e in examples], device=logp.device)
        return dpo_loss(logp[:n], logp[n:], reference[:, 0], reference[:, 1], config.beta)
    loss = completion_loss(
        model, make_batch([(e.prompt, e.target) for e in examples], pad_id(model)), interventions
    )
    return loss, loss.detach()


@torch.no_grad()
def validation_loss(model: Model, examples: Sequence[Example], interventions, config: TrainConfig) -> float:
    fill_reference(model, examples)
    total, count = 0.0, 0
    for start in range(0, len(examples), config.batch_size):
        chunk = examples[start : start + config.batch_size]
        loss, _ = task_loss(model, chunk, interventions, config)
        total += float(loss) * len(chunk)
        count += len(chunk)
    return total / max(1, count)


# --- the loop -------------------------------------------------------------------------------------


def optimise(
    model: Model,
    examples: list[Example],
    parameter: torch.nn.Parameter,
    make_interventions: Callable[[], list[HeadOutputAffine]],
    config: TrainConfig,
    *,
    val_examples: list[Example] | None = None,
    progress: bool = True,
    desc: str = "lofit",
    checkpoint=None,
) -> dict:
    """Train ``parameter`` (the only trainable tensor) on the task loss (+ L1). Returns a log.

    With ``val_examples`` the validation loss is measured before training and after every epoch, and
    ``parameter`` ends at the value with the lowest validation loss (selection on the validation set).
    ``checkpoint`` (a ``workbench.checkpoint.TrainingCheckpoint`` for this exact job) keeps the loop's state
    after every step (parameter, AdamW moments, schedule, data order, log), so an interrupted run continues
    after its last finished step and ends where an uninterrupted one would.
    """
    model.hf.requires_grad_(False)
    batches_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = config.epochs * batches_per_epoch
    if config.steps is not None:
        total = min(total, config.steps)
    if total < 1:
        raise SpecError("nothing to train: give at least one step (check --epochs/--steps and the data)")
    optimizer = torch.optim.AdamW([parameter], lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    order = random.Random(config.seed)
    log = {"loss": [], "metric": [], "val": [], "steps": total}
    best = None
    step, resume_at = 0, 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:  # continue after the last finished step of an interrupted run
        state, tensors = saved
        step, resume_at, log = state["step"], state["position"], state["log"]
        order.setstate(_rng_state(state["epoch_rng"]))
        with torch.no_grad():
            parameter.copy_(tensors["parameter"].to(parameter.device))
        if "exp_avg" in tensors:
            optimizer.state[parameter] = {
                "step": tensors["adam_step"],
                "exp_avg": tensors["exp_avg"].to(parameter.device),
                "exp_avg_sq": tensors["exp_avg_sq"].to(parameter.device),
            }
        schedule.last_epoch = step  # the schedule where it stood, without stepping it before the optimiser
        for group in optimizer.param_groups:
            group["lr"] = config.lr * max(0.0, 1 - step / total)
        schedule._last_lr = [group["lr"] for group in optimizer.param_groups]
        if "best" in tensors:
            best = (state["best_loss"], state["best_step"], tensors["best"].to(parameter.device))
    elif val_examples:
        best = (
            validation_loss(model, val_examples, make_interventions(), config),
            0,
            parameter.detach().clone(),
        )
        log["val"].append({"step": 0, "loss": best[0]})
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc=desc, unit="step")
    while step < total:
        epoch_rng = order.getstate()
        indices = list(range(len(examples)))
        order.shuffle(indices)
        for start in range(resume_at, len(indices), config.batch_size):
            if step >= total:
                break
            chunk = [examples[i] for i in indices[start : start + config.batch_size]]
            fill_reference(model, chunk)  # lazily: a capped run never pays for pairs it does not use
            loss, metric = task_loss(model, chunk, make_interventions(), config)
            objective = loss + config.l1 * parameter.abs().sum() if config.l1 else loss
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            schedule.step()
            step += 1
            log["loss"].append(float(loss.detach()))
            log["metric"].append(float(metric))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if config.eval_every:
                due = step % config.eval_every == 0
            else:
                due = start + config.batch_size >= len(indices)
            if val_examples and (due or step == total):
                value = validation_loss(model, val_examples, make_interventions(), config)
                log["val"].append({"step": step, "loss": value})
                if value < best[0]:
                    best = (value, step, parameter.detach().clone())
            if checkpoint is not None:
                _save(checkpoint, step, start + config.batch_size, epoch_rng, log, parameter, optimizer, best)
        resume_at = 0
    if bar is not None:
        bar.close()
    if best is not None:
        with torch.no_grad():
            parameter.copy_(best[2])
        log["selected_step"] = best[1]
    return log


def _save(checkpoint, step, position, epoch_rng, log, parameter, optimizer, best) -> None:
    state = {"step": step, "position": position, "epoch_rng": _rng_json(epoch_rng), "log": log}
    tensors = {"parameter": parameter.detach()}
    moments = optimizer.state.get(parameter, {})
    if "exp_avg" in moments:
        tensors.update(
            adam_step=torch.as_tensor(moments["step"]).detach().clone(),
            exp_avg=moments["exp_avg"],
            exp_avg_sq=moments["exp_avg_sq"],
        )
    if best is not None:
        state.update(best_loss=best[0], best_step=best[1])
        tensors["best"] = best[2]
    checkpoint.save(state, tensors)


def _rng_json(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_state(saved: list) -> tuple:
    version, internal, gauss = saved
    return (version, tuple(internal), gauss)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def select_heads(
    model: Model,
    items: Sequence,
    config: TrainConfig,
    *,
    progress: bool = True,
    checkpoint=None,
) -> tuple[pd.DataFrame, torch.Tensor, dict]:
    """Step 1: learn a scale A per head (z <- (1 + A) z) with task loss + L1; rank heads by ||A||_2.

    Returns (head table with ``score`` = ||A||, the scales (layer, head, head_dim), training log).
    """
    shape = model.shape
    examples = make_examples(model, items, config)
    init = torch.randn(shape.num_layers, shape.num_heads, shape.head_dim, generator=_generator(config.seed))
    scales = torch.nn.Parameter((init * config.init_std).to(model.device))

    def interventions():
        return [
            HeadOutputAffine(layer, head, scale=scales[layer, head])
            for layer in range(shape.num_layers)
            for head in range(shape.num_heads)
        ]

    log = optimise(
        model, examples, scales, interventions, config, progress=progress, desc="lofit select", checkpoint=checkpoint
    )
    norms = scales.detach().norm(dim=-1).cpu()
    rows = [
        {"layer": layer, "head": head, "kv_head": shape.kv_head(head), "score": float(norms[layer, head])}
        for layer in range(shape.num_layers)
        for head in range(shape.num_heads)
    ]
    table = make_head_table(rows, "lofit", {**asdict(config), "items": len(items), "examples": len(examples)})
    table["rank"] = range(len(table))
    return table, scales.detach().cpu(), log


def random_heads(
    model: Model, k: int, seed: int, exclude: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """K heads drawn uniformly without replacement (the equal-parameter-count control)."""
    shape = model.shape
    excluded = {(int(layer), int(head)) for layer, head in exclude}
    pool = [
        (layer, head)
        for layer in range(shape.num_layers)
        for head in range(shape.num_heads)
        if (layer, head) not in excluded
    ]
    if not 1 <= k <= len(pool):
        raise SpecError(f"K must be between 1 and {len(pool)} for {model.name}, got {k}")
    return sorted(random.Random(seed).sample(pool, k))


def train_offsets(
    model: Model,
    heads: Sequence[tuple[int, int]],
    items: Sequence,
    config: TrainConfig,
    *,
    val_items: Sequence | None = None,
    scores: Sequence[float] | None = None,
    progress: bool = True,
    extra_params: dict | None = None,
) -> tuple[LofitArtifact, dict]:
    """Step 2: learn an offset v per chosen head (z <- z + v), model frozen, scales back at 1."""
    shape = model.shape
    heads = [(int(layer), int(head)) for layer, head in heads]
    for layer, head in heads:
        if not (0 <= layer < shape.num_layers and 0 <= head < shape.num_heads):
            raise SpecError(
                f"head ({layer}, {head}) is outside {model.name}: {shape.num_layers} layers x {shape.num_heads} heads"
            )
    examples = make_examples(model, items, config)
    val_examples = make_examples(model, val_items, config) if val_items else None
    init = torch.randn(len(heads), shape.head_dim, generator=_generator(config.seed))
    offsets = torch.nn.Parameter((init * config.init_std).to(model.device))

    def interventions():
        return [HeadOutputAffine(layer, head, offset=offsets[i]) for i, (layer, head) in enumerate(heads)]

    log = optimise(
        model,
        examples,
        offsets,
        interventions,
        config,
        val_examples=val_examples,
        progress=progress,
        desc="lofit train",
    )
    params = {**asdict(config), "items": len(items), "examples": len(examples), **(extra_params or {})}
    if val_items:
        params["val_items"] = len(val_items)
        params["selected_step"] = log.get("selected_step")
    artifact = LofitArtifact(
        model=model.name,
        task=config.task,
        heads=heads,
        offsets=offsets.detach().cpu().clone(),
        shape={
            "num_layers": shape.num_layers,
            "num_heads": shape.num_heads,
            "num_kv_heads": shape.num_kv_heads,
            "head_dim": shape.head_dim,
        },
        params=params,
        scores=list(scores) if scores is not None else None,
    )
    return artifact, log


def budget_projection(num_coordinates: int, budget: int, seed: int, device=None) -> torch.Tensor:
    """A fixed Gaussian map (num_coordinates, budget) with entries N(0, 1/budget).

    With w ~ N(0, s^2) each mapped coordinate starts at N(0, s^2), LoFiT's init scale, and an Adam
    step of size lr on every w coordinate moves a mapped coordinate by about lr, as in LoFiT.
    """
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(num_coordinates, budget, generator=generator) / math.sqrt(budget)
    return matrix.to(device) if device is not None else matrix


def train_shared_budget(
    model: Model,
    budget: int,
    items: Sequence,
    config: TrainConfig,
    *,
    val_items: Sequence | None = None,
    projection_seed: int = 0,
    progress: bool = True,
    lr_scale: float | None = None,
) -> tuple[LofitArtifact, dict, torch.Tensor]:
    """The all-heads control at LoFiT's parameter count: every head gets an offset, and all offsets
    together are ``P w`` with ``budget`` trained coordinates w and a fixed random P (``budget_projection``).

    ``lr_scale`` multiplies ``config.lr`` (default ``sqrt(budget / offset coordinates)``): an Adam step of
    lr on each of the ``budget`` coordinates moves each of the N mapped offset coordinates by about lr, so
    the whole edit grows by lr * sqrt(N) per step against LoFiT's lr * sqrt(budget) on its K heads; the
    default makes the two edits grow alike. With the unscaled lr (``lr_scale=1``, the first GPU run of
    2026-12-07) the validation loss rose from 0.70 to 11-13 within one epoch and the control never left
    its initial offsets.

    Returns (artifact with an offset on every head, training log, the trained w).
    """
    shape = model.shape
    heads = [(layer, head) for layer in range(shape.num_layers) for head in range(shape.num_heads)]
    if lr_scale is None:
        lr_scale = math.sqrt(budget / (len(heads) * shape.head_dim))
    config = replace(config, lr=config.lr * lr_scale)
    examples = make_examples(model, items, config)
    val_examples = make_examples(model, val_items, config) if val_items else None
    projection = budget_projection(len(heads) * shape.head_dim, budget, projection_seed, model.device)
    init = torch.randn(budget, generator=_generator(config.seed))
    coordinates = torch.nn.Parameter((init * config.init_std).to(model.device))

    def offsets():
        return (projection @ coordinates).view(len(heads), shape.head_dim)

    def interventions():
        values = offsets()
        return [HeadOutputAffine(layer, head, offset=values[i]) for i, (layer, head) in enumerate(heads)]

    log = optimise(
        model,
        examples,
        coordinates,
        interventions,
        config,
        val_examples=val_examples,
        progress=progress,
        desc="lofit all-heads",
    )
    params = {
        **asdict(config),
        "items": len(items),
        "examples": len(examples),
        "budget": budget,
        "lr_scale": lr_scale,
        "projection_seed": projection_seed,
        "selected_step": log.get("selected_step"),
    }
    with torch.no_grad():
        values = offsets().detach().cpu().clone()
    artifact = LofitArtifact(
        model=model.name,
        task=config.task,
        heads=heads,
        offsets=values,
        shape={
            "num_layers": shape.num_layers,
            "num_heads": shape.num_heads,
            "num_kv_heads": shape.num_kv_heads,
            "head_dim": shape.head_dim,
        },
        params=params,
    )
    return artifact, log, coordinates.detach().cpu().clone()
