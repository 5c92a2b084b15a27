"""``workbench compare RUN_A RUN_B``: two runs' head tables side by side (workbench.analyses.compare)."""

from __future__ import annotations

from pathlib import Path

import typer

from workbench.cli import app
from workbench.cli.common import friendly, uses_store


@app.command()
@friendly
@uses_store
def compare(
    run_a: str = typer.Argument(..., help="run id (or a unique prefix) from `workbench runs`"),
    run_b: str = typer.Argument(..., help="the run to compare it with"),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="write the per-head table: .parquet or .csv (columns <statistic>_a/_b/_difference)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print everything as one JSON object"),
    table: str | None = typer.Option(None, "--table", help="which head table (default: heads)"),
    top_k: int | None = typer.Option(None, "--top", min=1, help="top-k heads for the overlap (default 10)"),
) -> None:
    """Compare the head tables of two runs (two models, checkpoints or prompt sets): per (layer, head)
    value A, value B and B - A for every shared statistic; per statistic the largest absolute difference,
    the rank correlation and the top-k overlap."""
    import json

    from workbench.analyses.compare import compare_runs
    from workbench.store import default_store

    if out is not None and out.suffix not in (".parquet", ".csv"):
        raise FileNotFoundError(f"--out must end in .parquet or .csv, got {out}")
    result = compare_runs(default_store(), run_a, run_b, table=table, **({"top_k": top_k} if top_k else {}))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        wide = result.wide()
        tmp = out.with_name(f".{out.name}.tmp")
        wide.to_parquet(tmp, index=False) if out.suffix == ".parquet" else wide.to_csv(tmp, index=False)
        tmp.replace(out)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    a, b = result.a, result.b
    typer.echo(f"A {a['run_id']}  {a['kind']:12s} {a['model']}")
    typer.echo(f"B {b['run_id']}  {b['kind']:12s} {b['model']}   (head table {a['table']!r})")
    if result.only_in_a or result.only_in_b:
        typer.echo(f"heads only in A: {result.only_in_a}, only in B: {result.only_in_b} (left out)")
    typer.echo(
        f"{'statistic':22s} {'heads':>5s} {'max |B-A|':>11s} {'rank corr':>9s} {'top-' + str(result.top_k):>7s}"
    )
    for row in result.summary.itertuples():
        typer.echo(
            f"{row.statistic:22s} {row.heads:5d} {row.max_abs_difference:11.4g} {row.rank_correlation:9.3f} "
            f"{row.top_overlap:>3d}/{row.top_k:<3d}"
        )
    if out is not None:
        typer.echo(f"wrote {out} ({len(result.wide())} heads)")
