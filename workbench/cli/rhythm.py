"""``workbench rhythm``: preplan-and-anchor rhythm of a model's answers to word problems."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    runtime,
    uses_store,
)


@app.command()
@friendly
@uses_store
def rhythm(
    model: Annotated[str, typer.Argument(help="model name (see `workbench models`), HF id or local path")],
    out: Annotated[
        Path,
        typer.Option("--out", help="folder for tokens.parquet, summary.json, heads.parquet, rhythm.html"),
    ],
    problems: Annotated[
        Path | None,
        typer.Option(
            "--problems",
            help="JSONL, one {'question': ...} per line (default: the bundled arithmetic problems)",
        ),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="greedy response length bound")
    ] = 128,
    limit: Annotated[int | None, typer.Option("--limit", help="use only the first N problems")] = None,
    layers: Annotated[
        str | None, typer.Option("--layers", help="comma-separated layers (default: the middle third)")
    ] = None,
    instruction: Annotated[
        str | None,
        typer.Option(
            "--instruction", help="text appended to each question ('' = none; default: step by step, '####')"
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="problems generated together")] = 8,
    perturb: Annotated[
        bool, typer.Option("--perturb", help="also run the high- vs low-FAI perturbation test")
    ] = False,
    shuffles: Annotated[int, typer.Option("--shuffles", help="shuffles for the baselines")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    alpha: Annotated[
        float, typer.Option("--alpha", help="share of a dominated anchor's bonus moved to its intro token")
    ] = 0.5,
    amplification: Annotated[float, typer.Option("--amplification", help="gamma of a credited token")] = 1.5,
    tau_waad: Annotated[
        float | None, typer.Option("--tau-waad", help="WAAD ceiling of dominated anchors (default: median)")
    ] = None,
    tau_delta: Annotated[
        float | None,
        typer.Option(
            "--tau-delta", help="|Delta WAAD| floor before dominated anchors (default: the preplan cut)"
        ),
    ] = None,
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Generate answers, capture WAAD/FAI in one extra forward, detect preplan and anchor tokens, and
    export per-token credit weights with the analysis statistics and their baselines."""
    from workbench.analyses.rhythm.credit import RhythmParams
    from workbench.analyses.rhythm.job import rhythm_job
    from workbench.analyses.rhythm.problems import INSTRUCTION, load_problems
    from workbench.runners.hf import InputError

    where = runtime(device, dtype)  # a missing device fails here, before any work
    if max_new_tokens < 2:
        raise InputError("--max-new-tokens must be at least 2")
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1")
    if batch_size < 1 or shuffles < 1:
        raise InputError("--batch-size and --shuffles must be at least 1")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    try:
        params = RhythmParams(
            alpha=alpha, amplification=amplification, tau_waad=tau_waad, tau_delta=tau_delta
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    items = load_problems(problems, limit=limit)
    loaded = load(model, where)
    typer.echo(f"{loaded}: {len(items)} problems, up to {max_new_tokens} new tokens each", err=True)
    summary = rhythm_job(
        loaded,
        items,
        out,
        max_new_tokens=max_new_tokens,
        params=params,
        layers=parse_ints(layers),
        instruction=INSTRUCTION if instruction is None else instruction,
        batch_size=batch_size,
        shuffles=shuffles,
        seed=seed,
        perturb=perturb,
        echo=lambda line: typer.echo(line, err=True),
    )
    from workbench.analyses.rhythm.summary import markdown_tables

    typer.echo(markdown_tables(summary))
    typer.echo(f"\ntokens and summary in {out}")
