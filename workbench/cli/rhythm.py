"""``workbench rhythm``: preplan-and-anchor rhythm of a model's answers to word problems (the Step
``rhythm``, workbench.pipeline.steps.rhythm)."""

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
)
from workbench.pipeline.steps.rhythm import RhythmOptions as R


@app.command()
@friendly
@uses_store
def rhythm(
    model: str = typer.Argument(..., help="model name (see `workbench models`), HF id or local path"),
    out: Path = typer.Option(..., "--out", help="folder for tokens.parquet, summary.json, heads.parquet, rhythm.html"),
    problems: Path | None = option(R, "problems"),
    max_new_tokens: int | None = option(R, "max_new_tokens"),
    limit: int | None = option(R, "limit"),
    layers: str | None = option(R, "layers"),
    instruction: str | None = option(R, "instruction"),
    batch_size: int | None = option(R, "batch_size"),
    perturb: bool | None = option(R, "perturb", "--perturb"),
    shuffles: int | None = option(R, "shuffles"),
    seed: int | None = option(R, "seed"),
    alpha: float | None = option(R, "alpha"),
    amplification: float | None = option(R, "amplification"),
    tau_waad: float | None = option(R, "tau_waad"),
    tau_delta: float | None = option(R, "tau_delta"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Generate answers, capture WAAD/FAI in one extra forward, detect preplan and anchor tokens, and
    export per-token credit weights with the analysis statistics and their baselines."""
    from workbench.analyses.rhythm.job import write_rhythm_files
    from workbench.analyses.rhythm.summary import markdown_tables
    from workbench.runners.hf import InputError

    options = build_options(R, locals())
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    done = run_step("rhythm", options)
    summary = {**done.output.summary, "run_id": done.run_id}
    write_rhythm_files(out, done.output, summary)
    typer.echo(f"wrote {out}/tokens.parquet ({len(done.output.table('tokens'))} tokens), summary.json; run {done.run_id}",
               err=True)  # fmt: skip
    typer.echo(markdown_tables(summary))
    typer.echo(f"\ntokens and summary in {out}")
