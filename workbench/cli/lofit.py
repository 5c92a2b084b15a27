"""LoFiT commands: ``workbench lofit select|train|eval|fold|compare``.

Data files: the truthfulqa task reads CSV/JSON/JSONL with question, best_answer, correct_answers,
incorrect_answers (TruthfulQA's own CSV headers work); the clutrr task reads CLUTRR JSON (story, query,
target_text) or any prompt, completion rows. Without --data the small shipped sample is used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import typer

from workbench.cli import app
from workbench.cli.common import (
    DEFAULT_DEVICE,
    DEFAULT_DTYPE,
    Device,
    Dtype,
    friendly,
    load,
    record,
    runtime,
    uses_store,
    write_json,
)
from workbench.seam.spec import SpecError

lofit_app = typer.Typer(
    no_args_is_help=True,
    help="LoFiT: select heads (learned scales), learn head offsets, evaluate; artifacts are safetensors + JSON.",
)
app.add_typer(lofit_app, name="lofit")

MODEL_HELP = "model name (see `workbench models`), HF id or local path"
TASK_HELP = "truthfulqa (DPO on answer pairs; MC1/MC2) or clutrr (completion-only SFT; accuracy)"
DATA_HELP = "CSV/JSON/JSONL data file (default: the shipped sample for the task)"
PART_HELP = "use only part i of n of the file (fixed seeded split), e.g. 1/2"


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _items(task: str, data: Path | None, part: str | None, limit: int | None):
    from workbench.analyses.lofit import load_task, parse_part, sample_path

    if limit is not None and limit < 1:
        raise SpecError(f"--limit must be at least 1, got {limit}")
    path = data if data is not None else sample_path(task)
    return path, load_task(task, path, parse_part(part), limit)


def _check_task(task: str) -> None:
    from workbench.analyses.lofit.data import TASKS

    if task not in TASKS:
        raise SpecError(f"unknown --task {task!r}; choose one of {', '.join(TASKS)}")


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {out} exists and is not a folder")


def _record(kind: str, model, data_path: Path, params: dict, summary: dict, head_tables=None) -> str:
    from workbench.store import default_store

    return default_store().put_run(
        kind, model.name, _hash(str(data_path), params), params=params, summary=summary, head_tables=head_tables,
        runtime=record(model),
    )


@lofit_app.command("select")
@friendly
@uses_store
def select(
    model: str = typer.Argument(..., help=MODEL_HELP),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="folder: HEADS.json, scales.safetensors, log.json"),
    data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
    part: str | None = typer.Option(None, "--part", help=PART_HELP),
    limit: int | None = typer.Option(None, "--limit", help="use at most N questions/items"),
    epochs: int = typer.Option(5, "--epochs"),
    steps: int | None = typer.Option(None, "--steps", help="cap on optimiser steps (CPU: keep small)"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float | None = typer.Option(None, "--lr", help="default: spec §5 (truthfulqa 5e-3, clutrr 5e-4)"),
    l1: float | None = typer.Option(
        None, "--l1", help="L1 weight on the scales (truthfulqa 5e-4, clutrr 5e-3)"
    ),
    seed: int = typer.Option(0, "--seed"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Step 1: learn a scale vector per head (task loss + L1) and rank heads by its norm."""
    from workbench.analyses.heads import top_heads, write_heads_json
    from workbench.analyses.lofit import TrainConfig, save_scales, select_heads

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_task(task)
    _check_out_dir(out)
    config = TrainConfig.defaults(
        task, 1, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, l1=l1, seed=seed
    )
    path, items = _items(task, data, part, limit)
    loaded = load(model, where)
    table, scales, log = select_heads(loaded, items, config, progress=True)
    save_scales(out / "scales.safetensors", scales)
    write_json(out / "log.json", log)
    write_heads_json(out / "HEADS.json", table, loaded.name)
    run_id = _record(
        "lofit_select",
        loaded,
        path,
        table.attrs["params"],
        {"top": top_heads(table, 10)},
        {"heads": table},
    )
    typer.echo(f"top heads: {top_heads(table, 8)}")
    typer.echo(f"wrote {out / 'HEADS.json'}; run {run_id}")


@lofit_app.command("train")
@friendly
@uses_store
def train(
    model: str = typer.Argument(..., help=MODEL_HELP),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="artifact folder: lofit.safetensors + lofit.json"),
    heads: Path | None = typer.Option(
        None, "--heads", help="HEADS.json (from `lofit select` or any head finder)"
    ),
    k: int = typer.Option(8, "--k", help="number of heads (top K of --heads, or K random heads)"),
    random_seed: int | None = typer.Option(
        None, "--random", help="ignore --heads: K random heads drawn with this seed"
    ),
    data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
    part: str | None = typer.Option(None, "--part", help=PART_HELP),
    limit: int | None = typer.Option(None, "--limit"),
    val: Path | None = typer.Option(
        None, "--val", help="validation file: keep the offsets with the lowest val loss"
    ),
    val_part: str | None = typer.Option(None, "--val-part", help=PART_HELP),
    val_limit: int | None = typer.Option(None, "--val-limit"),
    epochs: int = typer.Option(5, "--epochs"),
    steps: int | None = typer.Option(None, "--steps"),
    eval_every: int | None = typer.Option(
        None, "--eval-every", help="validate every N steps (default: per epoch)"
    ),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float | None = typer.Option(None, "--lr", help="default 1e-2 (spec §5)"),
    seed: int = typer.Option(0, "--seed"),
    export_folded: Path | None = typer.Option(
        None,
        "--export-folded",
        help="also write a transformers checkpoint with the offsets folded into o_proj bias",
    ),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Step 2: learn an offset vector per chosen head (model frozen); write the LoFiT artifact."""
    from workbench.analyses.heads import read_heads_json, top_heads
    from workbench.analyses.lofit import TrainConfig, random_heads, train_offsets
    from workbench.analyses.lofit import export_folded as export

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_task(task)
    _check_out_dir(out)
    if heads is None and random_seed is None:
        raise SpecError("give --heads HEADS.json (e.g. from `workbench lofit select`) or --random SEED")
    config = TrainConfig.defaults(
        task, 2, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, seed=seed, eval_every=eval_every
    )
    path, items = _items(task, data, part, limit)
    val_items = _items(task, val, val_part, val_limit)[1] if val is not None else None
    table = read_heads_json(heads) if random_seed is None else None
    if table is not None and not 1 <= k <= len(table):
        raise SpecError(f"--k must be between 1 and {len(table)} (the heads in {heads}), got {k}")
    loaded = load(model, where)
    if table is not None:
        chosen, scores, source = top_heads(table, k), [float(s) for s in table["score"].head(k)], str(heads)
    else:
        chosen, scores, source = random_heads(loaded, k, random_seed), None, f"random:{random_seed}"
    artifact, log = train_offsets(
        loaded,
        chosen,
        items,
        config,
        val_items=val_items,
        scores=scores,
        progress=True,
        extra_params={"heads_from": source},
    )
    artifact.save(out)
    write_json(out / "log.json", log)  # training and validation losses (which step was kept)
    if export_folded is not None:
        export(loaded, artifact, export_folded)
        typer.echo(f"wrote folded checkpoint {export_folded}")
    run_id = _record(
        "lofit_train",
        loaded,
        path,
        artifact.params,
        {"heads": artifact.heads, "final_loss": log["loss"][-1]},
    )
    typer.echo(
        f"heads {artifact.heads}; {artifact.num_parameters} parameters; final loss {log['loss'][-1]:.4f}"
    )
    typer.echo(f"wrote {out}; run {run_id}")


@lofit_app.command("eval")
@friendly
@uses_store
def evaluate_command(
    model: str = typer.Argument(..., help=MODEL_HELP),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="a .json file, or a folder (writes eval.json in it)"),
    lofit: Path | None = typer.Option(None, "--lofit", help="LoFiT artifact folder (none: the base model)"),
    data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
    part: str | None = typer.Option(None, "--part", help=PART_HELP),
    limit: int | None = typer.Option(None, "--limit"),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """MC1/MC2 (truthfulqa) or accuracy (clutrr) of the base model or of the model with LoFiT offsets."""
    from workbench.analyses.lofit import LofitArtifact, evaluate

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_task(task)
    target = out if out.suffix == ".json" else out / "eval.json"
    if out.suffix != ".json":
        _check_out_dir(out)
    artifact = LofitArtifact.load(lofit) if lofit is not None else None
    if artifact is not None and artifact.task != task:
        raise SpecError(f"{lofit} was trained for task {artifact.task!r}, not {task!r}")
    path, items = _items(task, data, part, limit)
    loaded = load(model, where)
    interventions = []
    if artifact is not None:
        artifact.check_model(loaded)
        interventions = artifact.interventions()
    result = evaluate(loaded, task, items, interventions, batch_size=batch_size, progress=True)
    result.update(
        {"model": loaded.name, "task": task, "data": str(path), "lofit": str(lofit) if lofit else None}
    )
    write_json(target, result)
    metrics = {key: round(result[key], 4) for key in ("mc1", "mc2", "accuracy") if key in result}
    run_id = _record(
        "lofit_eval", loaded, path, {"lofit": str(lofit), "part": part, "limit": limit}, result
    )
    typer.echo(f"{metrics} over {result['n']} items; wrote {target}; run {run_id}")


@lofit_app.command("fold")
@friendly
def fold(
    model: str = typer.Argument(..., help=MODEL_HELP),
    lofit: Path = typer.Option(..., "--lofit", help="LoFiT artifact folder"),
    out: Path = typer.Option(..., "--out", help="folder for the transformers checkpoint"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Export MODEL with the offsets folded into o_proj biases (attention_bias=True; loads without the workbench)."""
    from workbench.analyses.lofit import LofitArtifact, export_folded

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_out_dir(out)
    artifact = LofitArtifact.load(lofit)
    loaded = load(model, where)
    export_folded(loaded, artifact, out)
    typer.echo(f"wrote {out} ({len(artifact.heads)} heads folded into o_proj biases)")


@lofit_app.command("compare")
@friendly
def compare(
    model: str = typer.Argument(..., help=MODEL_HELP),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="folder; resumable (finished units are skipped)"),
    train: Path = typer.Option(..., "--train"),
    val: Path = typer.Option(..., "--val"),
    test: Path = typer.Option(..., "--test"),
    train_part: str | None = typer.Option(None, "--train-part"),
    val_part: str | None = typer.Option(None, "--val-part"),
    test_part: str | None = typer.Option(None, "--test-part"),
    train_limit: int | None = typer.Option(None, "--train-limit"),
    val_limit: int | None = typer.Option(None, "--val-limit"),
    test_limit: int | None = typer.Option(None, "--test-limit"),
    ks: str = typer.Option("8,27", "--ks", help="comma-separated K values"),
    seeds: str = typer.Option("0,1", "--seeds"),
    select_steps: int | None = typer.Option(None, "--select-steps"),
    train_steps: int | None = typer.Option(None, "--train-steps"),
    eval_every: int | None = typer.Option(None, "--eval-every"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float | None = typer.Option(None, "--lr", help="step-2 learning rate (default 1e-2)"),
    max_prompt: int | None = typer.Option(None, "--max-prompt"),
    max_target: int | None = typer.Option(None, "--max-target"),
    retrieval_heads: Path | None = typer.Option(
        None, "--retrieval-heads", help="HEADS.json of retrieval heads"
    ),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Base vs LoFiT heads vs K random heads (vs K retrieval heads) at equal parameter count, over seeds."""
    from workbench.analyses.lofit import parse_part
    from workbench.analyses.lofit.compare import (
        ComparisonPlan,
        Split,
        run_comparison,
        summarise,
        summary_markdown,
    )
    from workbench.cli.common import parse_ints

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_task(task)
    _check_out_dir(out)
    for path in (train, val, test, retrieval_heads):
        if path is not None and not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
    plan = ComparisonPlan(
        task=task,
        train=Split(str(train), parse_part(train_part), train_limit),
        val=Split(str(val), parse_part(val_part), val_limit),
        test=Split(str(test), parse_part(test_part), test_limit),
        ks=parse_ints(ks),
        seeds=parse_ints(seeds),
        select_steps=select_steps,
        train_steps=train_steps,
        batch_size=batch_size,
        train_lr=lr,
        eval_every=eval_every,
        max_prompt=max_prompt,
        max_target=max_target,
        retrieval_heads=str(retrieval_heads) if retrieval_heads else None,
    )
    loaded = load(model, where)
    frame = run_comparison(loaded, plan, out, echo=typer.echo)
    typer.echo(summary_markdown(summarise(frame, task), task))
