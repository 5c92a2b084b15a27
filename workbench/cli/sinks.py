"""Sinks and calibration commands: ``heads sinks``, ``calibrate act|zerotuning``, ``eval task``."""

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
from workbench.cli.groups import eval_app, heads_app
from workbench.pipeline.steps.calibration import ActOptions, EvalTaskOptions, ZeroTuningOptions
from workbench.pipeline.steps.sinks import SinksOptions
from workbench.seam.spec import SpecError

calibrate_app = typer.Typer(no_args_is_help=True, help="Search heads for an attention calibration (ACT, ZeroTuning); writes CAL.json.")
app.add_typer(calibrate_app, name="calibrate")

def _check_out(out: Path) -> None:
    if out.suffix != ".json":
        raise SpecError(f"--out must be a .json path, got {out}")


@heads_app.command("sinks")
@friendly
@uses_store
def heads_sinks(
    model: str = typer.Argument(..., help="model name (see `workbench models`), HF id or local path"),
    text: Path = typer.Option(..., "--text", help="UTF-8 text; cut into windows, no BOS or template added"),
    out: Path = typer.Option(..., "--out", help="SINKS.json"),
    window: int | None = option(SinksOptions, "window"),
    eps: float | None = option(SinksOptions, "eps"),
    max_windows: int | None = option(SinksOptions, "max_windows"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Sink_k, first-token mass per head, hidden sinks and massive activations over a text."""
    options = build_options(SinksOptions, locals())
    _check_out(out)
    done = run_step("sinks", options)
    report = done.output.artifacts["report"]
    write_json(out, report)
    hidden = report["hidden_sinks"]
    typer.echo(f"Sink_1 = {report['sink_1']:.3f} over {report['params']['windows']} windows; "
               f"{hidden['positions_flagged']} hidden-sink positions; sink dims {report['massive_dims']['sink_dims']}")
    typer.echo(f"wrote {out}; run {done.run_id}")


def _calibrate(step: str, options, out: Path, name: str) -> None:
    _check_out(out)
    done = run_step(step, options)
    data = {**done.output.summary, "run_id": done.run_id}
    write_json(out, data)
    calibration = data["calibration"]
    typer.echo(f"{name} on {len(data['heads'])} heads: calibration accuracy {calibration['baseline']:.3f} -> "
               f"{calibration['calibrated']:.3f}; wrote {out}")


@calibrate_app.command("act")
@friendly
@uses_store
def calibrate_act(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    task: str | None = option(ActOptions, "task"),
    out: Path = typer.Option(..., "--out", help="CAL.json"),
    split: str | None = option(ActOptions, "split"),
    limit: int | None = option(ActOptions, "limit"),
    candidates: str | None = option(ActOptions, "candidates"),
    layers: str | None = option(ActOptions, "layers"),
    threshold: float | None = option(ActOptions, "threshold"),
    beta: float | None = option(ActOptions, "beta"),
    budget: int | None = option(ActOptions, "budget"),
    select: str | None = option(ActOptions, "select"),
    chat: bool | None = option(ActOptions, "chat", "--chat/--no-chat"),
    length_norm: bool | None = option(ActOptions, "length_norm", "--length-norm"),
    batch_size: int | None = option(ActOptions, "batch_size"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """ACT: profile head groups one at a time on the calibration split, add them greedily, write CAL.json."""
    options = build_options(ActOptions, locals())
    _calibrate("calibrate-act", options, out, "ACT")


@calibrate_app.command("zerotuning")
@friendly
@uses_store
def calibrate_zerotuning(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    task: str | None = option(ZeroTuningOptions, "task"),
    out: Path = typer.Option(..., "--out", help="CAL.json"),
    split: str | None = option(ZeroTuningOptions, "split"),
    limit: int | None = option(ZeroTuningOptions, "limit"),
    candidates: str | None = option(ZeroTuningOptions, "candidates"),
    layers: str | None = option(ZeroTuningOptions, "layers"),
    gammas: str | None = option(ZeroTuningOptions, "gammas"),
    budget: int | None = option(ZeroTuningOptions, "budget"),
    chat: bool | None = option(ZeroTuningOptions, "chat", "--chat/--no-chat"),
    length_norm: bool | None = option(ZeroTuningOptions, "length_norm", "--length-norm"),
    batch_size: int | None = option(ZeroTuningOptions, "batch_size"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """ZeroTuning: profile head groups at trial gammas, add them greedily, tune the strength, write CAL.json."""
    options = build_options(ZeroTuningOptions, locals())
    _calibrate("calibrate-zerotuning", options, out, "ZeroTuning")


@eval_app.command("task")
@friendly
@uses_store
def eval_task(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    task: str | None = option(EvalTaskOptions, "task"),
    split: str | None = option(EvalTaskOptions, "split"),
    limit: int | None = option(EvalTaskOptions, "limit"),
    intervention: list[Path] | None = option(EvalTaskOptions, "intervention"),
    bootstrap: int | None = option(EvalTaskOptions, "bootstrap"),
    out: Path | None = typer.Option(None, "--out", help="write the evaluation as JSON"),
    chat: bool | None = option(EvalTaskOptions, "chat", "--chat/--no-chat"),
    length_norm: bool | None = option(EvalTaskOptions, "length_norm", "--length-norm"),
    batch_size: int | None = option(EvalTaskOptions, "batch_size"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Accuracy with 95% bootstrap CIs, baseline and (with --intervention) calibrated, plus the paired difference."""
    options = build_options(EvalTaskOptions, locals())
    if out is not None:
        _check_out(out)
    done = run_step("eval-task", options)
    result = {**done.output.summary, "run_id": done.run_id}
    loaded_task, comparisons = done.output.artifacts["task"], done.output.artifacts["comparisons"]
    base = result["baseline"]
    typer.echo(f"{loaded_task.name} [{options.split}, {len(loaded_task)} items] baseline {base['accuracy']:.3f} "
               f"(95% CI {base['ci'][0]:.3f}-{base['ci'][1]:.3f})")
    for comparison in (c for c in comparisons if "calibrated" in c):
        cal, diff = comparison["calibrated"], comparison["difference"]
        typer.echo(f"{comparison['intervention']}: calibrated {cal['accuracy']:.3f} (95% CI {cal['ci'][0]:.3f}-{cal['ci'][1]:.3f}); "
                   f"difference {diff['mean']:+.3f} (95% CI {diff['ci'][0]:+.3f} to {diff['ci'][1]:+.3f})")
    if out is not None:
        write_json(out, result)
