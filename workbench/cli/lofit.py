"""LoFiT commands: ``workbench lofit select|train|eval|fold|compare``.

Data files: the truthfulqa task reads CSV/JSON/JSONL with question, best_answer, correct_answers,
incorrect_answers (TruthfulQA's own CSV headers work); the clutrr task reads CLUTRR JSON (story, query,
target_text) or any prompt, completion rows. Without --data the small shipped sample is used.
"""

from __future__ import annotations

from pathlib import Path

import typer

from workbench.cli import app
from workbench.cli.common import (
    DEFAULT_DEVICE,
    DEFAULT_DTYPE,
    Device,
    Dtype,
    build_options,
    friendly,
    option,
    run_step,
    uses_store,
    write_json,
)
from workbench.pipeline.steps.lofit import TASK_HELP, train_artifact, write_train_files
from workbench.pipeline.steps.lofit import LofitCompareOptions as C
from workbench.pipeline.steps.lofit import LofitEvalOptions as E
from workbench.pipeline.steps.lofit import LofitFoldOptions as F
from workbench.pipeline.steps.lofit import LofitSelectOptions as S
from workbench.pipeline.steps.lofit import LofitTrainOptions as T
from workbench.seam.spec import SpecError

lofit_app = typer.Typer(
    no_args_is_help=True,
    help="LoFiT: select heads (learned scales), learn head offsets, evaluate; artifacts are safetensors + JSON.",
)
app.add_typer(lofit_app, name="lofit")

MODEL_HELP = "model name (see `workbench models`), HF id or local path"


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {out} exists and is not a folder")


@lofit_app.command("select")
@friendly
@uses_store
def select(
    model: str = typer.Argument(..., help=MODEL_HELP),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="folder: HEADS.json, scales.safetensors, log.json"),
    data: Path | None = option(S, "file", "--data"),
    part: str | None = option(S, "part"),
    limit: int | None = option(S, "limit"),
    epochs: int | None = option(S, "epochs"),
    steps: int | None = option(S, "steps"),
    batch_size: int | None = option(S, "batch_size"),
    lr: float | None = option(S, "lr"),
    l1: float | None = option(S, "l1"),
    seed: int | None = option(S, "seed"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Step 1: learn a scale vector per head (task loss + L1) and rank heads by its norm."""
    from workbench.analyses.heads import top_heads, write_heads_json
    from workbench.analyses.lofit import save_scales

    options = build_options(S, locals(), file="data")
    _check_out_dir(out)
    done = run_step("lofit", options)
    table, found = done.output.table("heads"), done.output.artifacts
    save_scales(out / "scales.safetensors", found["scales"])
    write_json(out / "log.json", found["log"])
    write_heads_json(out / "HEADS.json", table, done.model.name, params=done.output.params)
    typer.echo(f"top heads: {top_heads(table, 8)}")
    typer.echo(f"wrote {out / 'HEADS.json'}; run {done.run_id}")


@lofit_app.command("train")
@friendly
@uses_store
def train(
    model: str = typer.Argument(..., help=MODEL_HELP),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="artifact folder: lofit.safetensors + lofit.json"),
    heads: Path | None = option(T, "heads"),
    k: int | None = option(T, "k", "--k"),
    random_seed: int | None = option(T, "random_seed", "--random"),
    data: Path | None = option(T, "file", "--data"),
    part: str | None = option(T, "part"),
    limit: int | None = option(T, "limit"),
    val: Path | None = option(T, "val"),
    val_part: str | None = option(T, "val_part"),
    val_limit: int | None = option(T, "val_limit"),
    epochs: int | None = option(T, "epochs"),
    steps: int | None = option(T, "steps"),
    eval_every: int | None = option(T, "eval_every"),
    batch_size: int | None = option(T, "batch_size"),
    lr: float | None = option(T, "lr"),
    seed: int | None = option(T, "seed"),
    export_folded: Path | None = typer.Option(
        None,
        "--export-folded",
        help="also write a transformers checkpoint with the offsets folded into o_proj bias",
    ),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Step 2: learn an offset vector per chosen head (model frozen); write the LoFiT artifact."""
    from workbench.analyses.lofit import export_folded as export

    options = build_options(T, locals(), file="data")
    _check_out_dir(out)
    done = run_step("lofit-train", options)
    write_train_files(out, done.output)  # the artifact and log.json, as a pipeline's lofit-train step writes them
    artifact, log = train_artifact(done.output), done.output.summary["log"]
    if export_folded is not None:
        export(done.model, artifact, export_folded)
        typer.echo(f"wrote folded checkpoint {export_folded}")
    typer.echo(
        f"heads {artifact.heads}; {artifact.num_parameters} parameters; final loss {log['loss'][-1]:.4f}"
    )
    typer.echo(f"wrote {out}; run {done.run_id}")


@lofit_app.command("eval")
@friendly
@uses_store
def evaluate_command(
    model: str = typer.Argument(..., help=MODEL_HELP),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="a .json file, or a folder (writes eval.json in it)"),
    lofit: Path | None = option(E, "lofit"),
    data: Path | None = option(E, "file", "--data"),
    part: str | None = option(E, "part"),
    limit: int | None = option(E, "limit"),
    batch_size: int | None = option(E, "batch_size"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """MC1/MC2 (truthfulqa) or accuracy (clutrr) of the base model or of the model with LoFiT offsets."""
    options = build_options(E, locals(), file="data")
    target = out if out.suffix == ".json" else out / "eval.json"
    if out.suffix != ".json":
        _check_out_dir(out)
    done = run_step("lofit-eval", options)
    result = done.output.summary
    write_json(target, result)
    metrics = {key: round(result[key], 4) for key in ("mc1", "mc2", "accuracy") if key in result}
    typer.echo(f"{metrics} over {result['n']} items; wrote {target}; run {done.run_id}")


@lofit_app.command("fold")
@friendly
@uses_store
def fold(
    model: str = typer.Argument(..., help=MODEL_HELP),
    lofit: Path = option(F, "lofit"),
    out: Path = typer.Option(..., "--out", help="folder for the transformers checkpoint"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Export MODEL with the offsets folded into o_proj biases (attention_bias=True; loads without the workbench)."""
    from workbench.analyses.lofit.fold import save_checkpoint

    options = build_options(F, locals())
    _check_out_dir(out)
    done = run_step("lofit-fold", options)
    save_checkpoint(done.output.artifacts["checkpoint"], done.model.tokenizer, out)
    heads = len(done.output.summary["heads"])
    typer.echo(f"wrote {out} ({heads} heads folded into o_proj biases); run {done.run_id}")


@lofit_app.command("compare")
@friendly
@uses_store
def compare(
    model: str = typer.Argument(..., help=MODEL_HELP),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = option(C, "out"),
    train: Path = option(C, "train"),
    val: Path = option(C, "val"),
    test: Path = option(C, "test"),
    train_part: str | None = option(C, "train_part"),
    val_part: str | None = option(C, "val_part"),
    test_part: str | None = option(C, "test_part"),
    train_limit: int | None = option(C, "train_limit"),
    val_limit: int | None = option(C, "val_limit"),
    test_limit: int | None = option(C, "test_limit"),
    ks: str | None = option(C, "ks"),
    seeds: str | None = option(C, "seeds"),
    select_steps: int | None = option(C, "select_steps"),
    train_steps: int | None = option(C, "train_steps"),
    eval_every: int | None = option(C, "eval_every"),
    batch_size: int | None = option(C, "batch_size"),
    lr: float | None = option(C, "lr"),
    max_prompt: int | None = option(C, "max_prompt"),
    max_target: int | None = option(C, "max_target"),
    retrieval_heads: Path | None = option(C, "retrieval_heads"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Base vs LoFiT heads vs K random heads (vs K retrieval heads) at equal parameter count, over seeds."""
    from workbench.analyses.lofit.compare import summary_markdown

    options = build_options(C, locals())
    done = run_step("lofit-compare", options)
    typer.echo(f"wrote {out}; run {done.run_id}", err=True)
    typer.echo(summary_markdown(done.output.table("summary"), options.task))
