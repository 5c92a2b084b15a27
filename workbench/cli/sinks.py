"""Sinks and calibration commands: ``heads sinks``, ``calibrate act|zerotuning``, ``eval task``."""

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
    build_options,
    friendly,
    load,
    option,
    parse_ints,
    record,
    run_step,
    runtime,
    uses_store,
    write_json,
)
from workbench.cli.groups import eval_app, heads_app
from workbench.pipeline.steps.sinks import SinksOptions
from workbench.seam.spec import SpecError

calibrate_app = typer.Typer(no_args_is_help=True, help="Search heads for an attention calibration (ACT, ZeroTuning); writes CAL.json.")
app.add_typer(calibrate_app, name="calibrate")

TASK_HELP = "task: sentiment (shipped), truthfulqa, clutrr (need ../shared/data) or a .csv/.jsonl task file"


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    options = build_options(SinksOptions, model=model, device=device, dtype=dtype, text=text, window=window,
                            eps=eps, max_windows=max_windows)  # fmt: skip
    _check_out(out)
    done = run_step("sinks", options)
    report = done.output.artifacts["report"]
    write_json(out, report)
    hidden = report["hidden_sinks"]
    typer.echo(f"Sink_1 = {report['sink_1']:.3f} over {report['params']['windows']} windows; "
               f"{hidden['positions_flagged']} hidden-sink positions; sink dims {report['massive_dims']['sink_dims']}")
    typer.echo(f"wrote {out}; run {done.run_id}")


def _task(task: str, split: str, limit: int | None, chat: bool, length_norm: bool):
    from workbench.analyses.calibration.tasks import load_task

    loaded = load_task(task, split, limit)
    loaded.chat = chat
    loaded.length_norm = length_norm
    return loaded


def _record(kind: str, model, data: dict, params: dict) -> str:
    from workbench.store import default_store

    return default_store().put_run(kind, model.name, _hash(data.get("task"), params), params=params, summary=data,
                                   runtime=record(model))


@calibrate_app.command("act")
@friendly
@uses_store
def calibrate_act(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    task: str = typer.Option("sentiment", "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="CAL.json"),
    split: str = typer.Option("calibration", "--split", help="split searched on (never the test split you report)"),
    limit: int | None = typer.Option(None, "--limit", help="use at most N items (seeded sample)"),
    candidates: str = typer.Option("block", "--candidates", help="head groups: block (3 layers), layer, head_index or head"),
    layers: str | None = typer.Option(None, "--layers", help="comma-separated candidate layers (default 2..L-2)"),
    threshold: float = typer.Option(0.1, "--threshold", help="ACT sink threshold on the column mean"),
    beta: float = typer.Option(0.4, "--beta", help="share of sink attention kept"),
    budget: int = typer.Option(2, "--budget", help="greedy additions at most"),
    select: str = typer.Option("greedy", "--select", help="greedy (HeadHunter) or filter (every improving group, as ACT)"),
    chat: bool = typer.Option(False, "--chat/--no-chat", help="wrap prompts in the chat template"),
    length_norm: bool = typer.Option(False, "--length-norm", help="options mode: mean instead of summed log-likelihood"),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """ACT: profile head groups one at a time on the calibration split, add them greedily, write CAL.json."""
    from workbench.analyses.calibration import calibrate_act as search

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_out(out)
    if split == "test":
        raise SpecError("calibrate on the calibration split; the test split is for `workbench eval task`")
    loaded_task = _task(task, split, limit, chat, length_norm)
    loaded = load(model, where)
    data = search(loaded, loaded_task, kind=candidates, layers=parse_ints(layers), threshold=threshold, beta=beta,
                  budget=budget, select=select, batch_size=batch_size, progress=True)
    data["run_id"] = _record("calibrate-act", loaded, data, data["params"])
    write_json(out, data)
    calibration = data["calibration"]
    typer.echo(f"ACT on {len(data['heads'])} heads: calibration accuracy {calibration['baseline']:.3f} -> {calibration['calibrated']:.3f}; wrote {out}")


@calibrate_app.command("zerotuning")
@friendly
@uses_store
def calibrate_zerotuning(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    task: str = typer.Option("sentiment", "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="CAL.json"),
    split: str = typer.Option("calibration", "--split", help="split searched on (never the test split you report)"),
    limit: int | None = typer.Option(None, "--limit", help="use at most N items (seeded sample)"),
    candidates: str = typer.Option("head_index", "--candidates", help="head groups: head_index (ZeroTuning), block, layer or head"),
    layers: str | None = typer.Option(None, "--layers", help="comma-separated candidate layers (default all)"),
    gammas: str = typer.Option("2", "--gammas", help="trial gamma(s); one gamma: groups that lose are retried at 1/gamma"),
    budget: int = typer.Option(2, "--budget", help="greedy additions at most"),
    chat: bool = typer.Option(False, "--chat/--no-chat", help="wrap prompts in the chat template"),
    length_norm: bool = typer.Option(False, "--length-norm", help="options mode: mean instead of summed log-likelihood"),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """ZeroTuning: profile head groups at trial gammas, add them greedily, tune the strength, write CAL.json."""
    from workbench.analyses.calibration import calibrate_zerotuning as search

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_out(out)
    if split == "test":
        raise SpecError("calibrate on the calibration split; the test split is for `workbench eval task`")
    try:
        trial = tuple(float(g) for g in gammas.split(","))
    except ValueError:
        raise SpecError(f"--gammas must be comma-separated numbers, got {gammas!r}") from None
    loaded_task = _task(task, split, limit, chat, length_norm)
    loaded = load(model, where)
    data = search(loaded, loaded_task, kind=candidates, layers=parse_ints(layers), gammas=trial, budget=budget,
                  batch_size=batch_size, progress=True)
    data["run_id"] = _record("calibrate-zerotuning", loaded, data, data["params"])
    write_json(out, data)
    calibration = data["calibration"]
    typer.echo(f"ZeroTuning on {len(data['heads'])} heads: calibration accuracy {calibration['baseline']:.3f} -> {calibration['calibrated']:.3f}; wrote {out}")


def read_interventions(path: Path):
    """Interventions from CAL.json (or any JSON list of interventions); data only."""
    import workbench.analyses.calibration.interventions  # noqa: F401  (registers act, var, softpag)
    from workbench.seam.interventions import interventions_from_json

    if not path.exists():
        raise FileNotFoundError(f"intervention file {path} does not exist")
    return interventions_from_json(path.read_text())


@eval_app.command("task")
@friendly
@uses_store
def eval_task(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    task: str = typer.Option("sentiment", "--task", help=TASK_HELP),
    split: str = typer.Option("test", "--split", help="split to evaluate (held out from calibration)"),
    limit: int | None = typer.Option(None, "--limit", help="use at most N items (seeded sample)"),
    intervention: list[Path] | None = typer.Option(None, "--intervention", help="CAL.json or a JSON list of interventions; repeat to compare several against one baseline pass"),
    bootstrap: int = typer.Option(2000, "--bootstrap", help="bootstrap resamples for the confidence intervals"),
    out: Path | None = typer.Option(None, "--out", help="write the evaluation as JSON"),
    chat: bool = typer.Option(False, "--chat/--no-chat", help="wrap prompts in the chat template"),
    length_norm: bool = typer.Option(False, "--length-norm", help="options mode: mean instead of summed log-likelihood"),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Accuracy with 95% bootstrap CIs, baseline and (with --intervention) calibrated, plus the paired difference."""
    from workbench.analyses.calibration.evaluate import evaluate

    where = runtime(device, dtype)  # a missing device fails here, before any work
    if out is not None:
        _check_out(out)
    paths = list(intervention or [])
    loaded_sets = [read_interventions(path) for path in paths]
    loaded_task = _task(task, split, limit, chat, length_norm)
    loaded = load(model, where)
    result = evaluate(loaded, loaded_task, loaded_sets[0] if loaded_sets else [], samples=bootstrap, batch_size=batch_size,
                      progress=True)
    result["model"] = loaded.name
    result["intervention"] = str(paths[0]) if paths else None
    # one baseline pass; every file gets its own calibrated accuracy and paired difference
    comparisons = []
    for index, (path, interventions) in enumerate(zip(paths, loaded_sets, strict=True)):
        other = result if index == 0 else evaluate(loaded, loaded_task, interventions, samples=bootstrap, batch_size=batch_size,
                                                   progress=True, baseline=result["baseline"]["correct_items"])
        comparisons.append({"intervention": str(path), **{k: other[k] for k in ("calibrated", "difference", "flips") if k in other}})
    if len(comparisons) > 1:
        result["comparisons"] = comparisons
    result["run_id"] = _record("eval-task", loaded, result, {"intervention": [str(p) for p in paths] or None, "split": split})
    base = result["baseline"]
    typer.echo(f"{loaded_task.name} [{split}, {len(loaded_task)} items] baseline {base['accuracy']:.3f} "
               f"(95% CI {base['ci'][0]:.3f}-{base['ci'][1]:.3f})")
    for comparison in (c for c in comparisons if "calibrated" in c):
        cal, diff = comparison["calibrated"], comparison["difference"]
        typer.echo(f"{comparison['intervention']}: calibrated {cal['accuracy']:.3f} (95% CI {cal['ci'][0]:.3f}-{cal['ci'][1]:.3f}); "
                   f"difference {diff['mean']:+.3f} (95% CI {diff['ci'][0]:+.3f} to {diff['ci'][1]:+.3f})")
    if out is not None:
        write_json(out, result)
