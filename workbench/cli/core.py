"""Core commands: models, setup, capture, runs, demo."""

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
    load,
    option,
    run_step,
    runtime,
    uses_store,
)
from workbench.cli.common import record as record_of
from workbench.pipeline.steps.capture import CaptureTextOptions as C
from workbench.pipeline.steps.capture import CaptureTextStep


@app.command()
def models() -> None:
    """List the models the workbench knows by name (any HF id or local path also works)."""
    from workbench.models.registry import known_models

    for entry in known_models():
        typer.echo(f"{entry.name:16s} {entry.kind:10s} {entry.description}")


@app.command()
@friendly
def setup() -> None:
    """Convert the embedded model weights into the cache ($WORKBENCH_HOME), once."""
    from workbench.models.convert import convert_smollm2
    from workbench.models.registry import smollm2_dir

    folder = convert_smollm2(smollm2_dir(), progress=typer.echo)
    typer.echo(f"smollm2-135m ready in {folder}")
    try:
        from workbench.models.dinov2 import ensure_dinov2  # the vision extra, when present
    except ImportError:
        return
    typer.echo(f"dinov2-s14 ready in {ensure_dinov2(progress=typer.echo)}")


@app.command()
@friendly
@uses_store
def capture(
    model: str = typer.Argument(..., help="model name (see `workbench models`), HF id or local path"),
    text: Path = typer.Option(
        ..., "--text", help="UTF-8 text file, or a folder: each *.txt in it; tokenised with no BOS or chat template"
    ),
    out: Path = typer.Option(
        ..., "--out", help="Parquet file: one row per (layer, head); for a folder the mean over its texts, "
        "and OUT_STEM.TEXT_STEM.parquet beside it for each text"
    ),
    window: int | None = option(C, "window"),
    layers: str | None = option(C, "layers"),
    heads: str | None = option(C, "heads"),
    spec_json: str | None = option(C, "spec", "--spec"),
    pooled: int | None = option(C, "pooled"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Capture attention statistics over a text; write the per-head table and record the run."""
    from workbench.store import default_store
    from workbench.store.record import write_parquet

    if out.suffix != ".parquet":
        raise FileNotFoundError(f"--out must be a .parquet path, got {out}")
    options = build_options(C, locals(), spec="spec_json")
    if text.is_dir():
        return capture_folder(options, out)
    done = run_step("capture-text", options)
    table, result = done.output.artifacts["table"], done.output.artifacts["capture"]
    write_parquet(table, out)
    loaded = done.model
    typer.echo(f"device {loaded.device}, dtype {str(loaded.dtype).replace('torch.', '')}; attention backend: {result.backend_summary()}")
    typer.echo(f"wrote {out} ({len(table)} heads); run {done.run_id} in {default_store().root}")


def capture_folder(options, out: Path) -> None:
    """`capture --text FOLDER`: one capture over every *.txt, in padded batches; writes the mean table to
    OUT and each text's table to OUT_STEM.TEXT_STEM.parquet; one store run per text (through the runner).

    Not one Step run: a Step run records one run, and each text's capture is its own ``capture`` run (the
    app opens a text's per-token statistics from it; tests/test_capture_texts.py counts one run per text).
    The options are the capture-text Step's and validated by it; the record is ``capture_record``'s."""
    from workbench.pipeline.runner import write_run
    from workbench.store import default_store
    from workbench.store.captures import capture_record
    from workbench.store.record import write_parquet
    from workbench.texts import read_texts

    where = runtime(options.device, options.dtype)
    CaptureTextStep().validate_options(options)
    store = default_store()
    spec = options.capture_spec(folder=True)
    texts = read_texts(options.text)
    loaded = load(options.model, where)
    spec.validate_for(loaded.shape.num_layers, loaded.shape.num_heads)
    typer.echo(f"{loaded}: {len(texts)} texts from {options.text}", err=True)
    result = loaded.capture_texts(texts, spec, window=options.window)
    tables = {out: result.head_table()}
    for name, table in result.head_tables().items():
        tables[out.with_name(f"{out.stem}.{name}.parquet")] = table
    for part in result.split():
        ids = loaded.encode(texts[part.meta["text"]], window=options.window)
        record = capture_record(part, input_ids=ids, params={"window": options.window})
        write_run(store, record, model=loaded.name, runtime=record_of(loaded))
    for path, table in tables.items():
        write_parquet(table, path)
    typer.echo(f"attention backend: {result.backend_summary()}")
    typer.echo(
        f"wrote {out} (mean over {len(texts)} texts) and {len(texts)} per-text tables "
        f"{out.stem}.<text>.parquet; {len(texts)} runs in {store.root}"
    )


@app.command()
def env(as_json: bool = typer.Option(False, "--json", help="one JSON object (paste it into bug reports)")) -> None:
    """Versions, CUDA, whether the project's kernels import, the attention backend a capture would use,
    and where the embedded models and the store are."""
    import json

    from workbench.env import environment

    report = environment()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        typer.echo(f"{key:22s} {value}")


@app.command()
@friendly
@uses_store
def runs(
    model: str | None = typer.Option(None, "--model"),
    kind: str | None = typer.Option(None, "--kind"),
    as_json: bool = typer.Option(False, "--json"),
    everything: bool = typer.Option(False, "--all", help="also the internal shard runs of sweeps and Ray jobs"),
) -> None:
    """List the runs recorded in the store."""
    from workbench.store import default_store

    table = default_store().runs(model=model, kind=kind, internal=everything)
    if as_json:
        typer.echo(table.to_json(orient="records", date_format="iso"))
        return
    if table.empty:
        typer.echo(f"no runs in {default_store().root}")
        return
    for row in table.itertuples():
        where = " ".join(f"{_or_dash(value):{width}s}" for value, width in ((row.device, 7), (row.dtype, 8), (row.backend, 14)))
        typer.echo(f"{row.run_id}  {row.kind:12s} {row.model:20s} {where} {str(row.created)[:19]}  {row.path}")


def _or_dash(value) -> str:
    """A store value for the text listing; a run recorded before the column existed shows '-'."""
    return "-" if value is None or value != value or value == "" else str(value)


@app.command()
@friendly
@uses_store
def demo(
    model: str | None = typer.Option(None, "--model", help="another model (default: the pipeline's, smollm2-135m)"),
    out: Path = typer.Option(Path("results/demo"), "--out"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """The main head-analysis job of `make demo`: the pipeline pipelines/demo.yaml (capture, label heads,
    select the sink heads, mask them against random controls, HTML report); prints where the results are."""
    import importlib.resources

    import yaml

    from workbench.pipeline import parse_pipeline, run_pipeline
    from workbench.store import default_store

    runtime(device, dtype)  # a missing device fails here, before anything runs
    source = importlib.resources.files("workbench.data").joinpath("pipelines/demo.yaml").read_text()
    data = yaml.safe_load(source)
    if model:
        data["model"] = model
    data["device"], data["dtype"] = device, dtype
    spec = parse_pipeline(data, name="demo", out=out, source=source)
    store = default_store()
    result = run_pipeline(spec, store=store, echo=typer.echo)
    typer.echo(f"results: {out}/ (report.html, HEADS.json, capture.parquet, summary.json)")
    for path in result.files:
        typer.echo(f"  {path}")
    typer.echo(f"store: {store.root} (`workbench runs` lists the runs; `make app` opens the dashboard)")
