"""``workbench pipeline run|check|steps|sweep``: scripted head-selection pipelines and sweeps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from workbench.cli import app
from workbench.cli.common import Device, Dtype, friendly, uses_store

pipeline_app = typer.Typer(
    no_args_is_help=True,
    help="Head-selection pipelines from YAML (capture -> analyses -> select -> validate -> report), and sweeps.",
)
app.add_typer(pipeline_app, name="pipeline")

EXECUTOR_HELP = "local (in this process, default) or ray (a Ray cluster; see --address)"
ADDRESS_HELP = (
    "Ray cluster: auto (the running cluster) or HOST:PORT (a head node); default starts a local one"
)


def _executor(kind: str, address: str | None, replicas: int | None, gpus: float, store, device: str | None = None):
    from workbench.devices import DEFAULT_DEVICE
    from workbench.exec import make_executor

    if kind == "ray":
        return make_executor("ray", address, store=store, replicas=replicas, num_gpus_per_replica=gpus)
    return make_executor(kind, address, store=store, device=device or DEFAULT_DEVICE)


def _override(spec, device: str | None, dtype: str | None) -> None:
    """--device/--dtype win over the file's device:/dtype: keys (checked the same way)."""
    from workbench.pipeline.spec import check_runtime

    if device is not None or dtype is not None:
        spec.device, spec.dtype = check_runtime(device or spec.device, dtype or spec.dtype)


def _close(executor) -> None:
    try:
        executor.close()
    except Exception:  # pragma: no cover - best effort at exit
        pass


@pipeline_app.command("run")
@friendly
@uses_store
def run_command(
    file: Path = typer.Argument(..., help="pipeline YAML file (see pipelines/)"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default: the file's outputs.dir)"),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    replicas: int | None = typer.Option(
        None, "--replicas", help="Ray: model replicas (default: as many as fit)"
    ),
    gpus: float = typer.Option(0, "--gpus-per-replica", help="Ray: GPUs per replica (>1 splits the model)"),
    device: Device = None,  # None: the file's device: key, else auto
    dtype: Dtype = None,
) -> None:
    """Run a pipeline step by step (finished steps are read back from the store, not re-run)."""
    from workbench.pipeline import load_pipeline, run_pipeline
    from workbench.store import default_store

    spec = load_pipeline(file, out=out)  # every check happens here, before anything runs
    _override(spec, device, dtype)
    store = default_store()
    runner = _executor(executor, address, replicas, gpus, store, spec.device)
    try:
        result = run_pipeline(spec, store=store, executor=runner, echo=typer.echo)
    except ConnectionError as error:
        typer.echo(f"error: cannot reach the Ray cluster: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        _close(runner)
    ran = sum(s == "ran" for s in result.status.values())
    typer.echo(f"{ran} step(s) ran, {len(result.status) - ran} read back; files:")
    for path in result.files:
        typer.echo(f"  {path}")


@pipeline_app.command("check")
@friendly
def check_command(file: Path = typer.Argument(..., help="pipeline YAML file")) -> None:
    """Validate a pipeline file without running it."""
    from workbench.pipeline import load_pipeline

    spec = load_pipeline(file)
    typer.echo(f"{file}: ok ({len(spec.steps)} steps: {', '.join(c['id'] for c in spec.steps)})")


@pipeline_app.command("steps")
def steps_command() -> None:
    """List the step kinds a pipeline may use (and whether their analysis is installed)."""
    from workbench.pipeline.registry import known_steps, missing_modules

    for entry in known_steps():
        missing = missing_modules(entry)
        state = "" if not missing else f"  [not installed: {', '.join(missing)}]"
        typer.echo(f"{entry.name:10s} {entry.description}{state}")


@pipeline_app.command("sweep")
@friendly
@uses_store
def sweep_command(
    file: Path = typer.Argument(..., help="sweep YAML file (models x conditions x prompts)"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default: the file's outputs.dir)"),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    replicas: int | None = typer.Option(
        None, "--replicas", help="Ray: model replicas (default: as many as fit)"
    ),
    gpus: float = typer.Option(0, "--gpus-per-replica", help="Ray: GPUs per replica (>1 splits the model)"),
    device: Device = None,  # None: the file's device: key, else auto
    dtype: Dtype = None,
) -> None:
    """Run a sweep; each shard is recorded once, so an interrupted sweep resumes where it stopped."""
    from workbench.pipeline.sweep import load_sweep, run_sweep
    from workbench.store import default_store

    spec = load_sweep(file, out=out)
    if dtype is not None:
        from workbench.pipeline.spec import check_runtime

        check_runtime(None, dtype)
        spec.jobs = [dataclasses.replace(job, dtype=dtype) for job in spec.jobs]
    store = default_store()
    runner = _executor(executor, address, replicas, gpus, store, device or spec.device)
    try:
        run_sweep(spec, runner, store, echo=typer.echo)
    except ConnectionError as error:
        typer.echo(f"error: cannot reach the Ray cluster: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        _close(runner)
    summary = json.loads((spec.out / "summary.json").read_text())
    typer.echo(json.dumps(summary["means"], indent=1))
    typer.echo(f"wrote {spec.out / 'sweep.parquet'} and {spec.out / 'summary.json'}")
