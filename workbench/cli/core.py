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
    friendly,
    load,
    parse_ints,
    read_text,
    record,
    runtime,
    uses_store,
)


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
    window: int | None = typer.Option(None, "--window", help="keep only the first N tokens"),
    layers: str | None = typer.Option(None, "--layers", help="comma-separated layers (default all)"),
    heads: str | None = typer.Option(None, "--heads", help="comma-separated query heads (default all)"),
    spec_json: str | None = typer.Option(
        None, "--spec", help="a capture spec as JSON (overrides --layers/--heads)"
    ),
    pooled: int = typer.Option(
        128, "--pooled", help="side of the stored pooled attention map (0 = none; one text only, not a folder)"
    ),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Capture attention statistics over a text; write the per-head table and record the run."""
    from workbench.seam.spec import CaptureSpec
    from workbench.store import default_store
    from workbench.store.captures import save_capture

    if out.suffix != ".parquet":
        raise FileNotFoundError(f"--out must be a .parquet path, got {out}")
    where = runtime(device, dtype)
    if spec_json:
        spec = CaptureSpec.from_json(spec_json)
    else:
        spec = CaptureSpec(
            layers=parse_ints(layers),
            heads=parse_ints(heads),
            key_statistics=("received",),
            pooled_cells=0 if text.is_dir() else pooled,
        )
    if text.is_dir():
        return capture_folder(model, text, out, window, spec, where)
    content = read_text(text)
    loaded = load(model, where)
    spec.validate_for(loaded.shape.num_layers, loaded.shape.num_heads)
    if window is not None and window < 2:
        raise FileNotFoundError("--window must be at least 2 tokens")
    ids = loaded.encode(content, window=window)
    typer.echo(f"{loaded}: {ids.shape[-1]} tokens", err=True)
    _, result = loaded.run(ids, spec, progress=True, all_logits=False)  # the table needs no logits
    table = result.head_table()
    run_id = save_capture(
        default_store(), result, model=loaded.name, input_ids=ids, params={"window": window},
        runtime=record(loaded),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.parquet")
    table.to_parquet(tmp, index=False)
    tmp.replace(out)
    typer.echo(f"device {loaded.device}, dtype {str(loaded.dtype).replace('torch.', '')}; attention backend: {result.backend_summary()}")
    typer.echo(f"wrote {out} ({len(table)} heads); run {run_id} in {default_store().root}")


def capture_folder(model: str, folder: Path, out: Path, window: int | None, spec, where) -> None:
    """`capture --text FOLDER`: one capture over every *.txt, in padded batches; writes the mean table to
    OUT and each text's table to OUT_STEM.TEXT_STEM.parquet; one store run per text."""
    from workbench.store import default_store
    from workbench.store.captures import save_capture
    from workbench.texts import read_texts

    texts = read_texts(folder)
    loaded = load(model, where)
    spec.validate_for(loaded.shape.num_layers, loaded.shape.num_heads)
    if window is not None and window < 2:
        raise FileNotFoundError("--window must be at least 2 tokens")
    typer.echo(f"{loaded}: {len(texts)} texts from {folder}", err=True)
    result = loaded.capture_texts(texts, spec, window=window)
    tables = {out: result.head_table()}
    for name, table in result.head_tables().items():
        tables[out.with_name(f"{out.stem}.{name}.parquet")] = table
    store = default_store()
    for part in result.split():
        ids = loaded.encode(texts[part.meta["text"]], window=window)
        save_capture(
            store, part, model=loaded.name, input_ids=ids, params={"window": window}, runtime=record(loaded)
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, table in tables.items():
        tmp = path.with_suffix(".tmp.parquet")
        table.to_parquet(tmp, index=False)
        tmp.replace(path)
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
