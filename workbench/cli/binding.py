"""``workbench binding MODEL --out DIR``: IsSameObject probes, binding subspace and head AUROC for a ViT
(the Step ``binding``, workbench.pipeline.steps.binding)."""

from __future__ import annotations

import json
import shutil
import tempfile
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
from workbench.pipeline.steps.binding import BindingOptions as B


@app.command()
@friendly
@uses_store
def binding(
    model: str = typer.Argument(..., help="dinov2-s14, a tiny-vit-* name, a .safetensors checkpoint, a HF ViT folder or id"),
    out: Path = typer.Option(..., "--out", help="folder for probes.parquet, heads.parquet, ablation.parquet, scenes.parquet, summary.json"),
    layers: str | None = option(B, "layers"),
    scenes: int | None = option(B, "scenes"),
    seed: int | None = option(B, "seed"),
    epochs: int | None = option(B, "epochs"),
    head_scenes: int | None = option(B, "head_scenes"),
    probes: str | None = option(B, "probes"),
    ranks: str | None = option(B, "ranks"),
    baselines: bool | None = option(B, "baselines", "--baselines/--no-baselines"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Probe a ViT for object binding on procedural scenes; write the tables and record the run."""
    from workbench.analyses.heads import write_heads_json
    from workbench.store import default_store

    options = build_options(B, locals())
    done = run_step("binding", options)
    record = done.output
    heads = record.artifacts["heads"]  # written even when empty (--head-scenes 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        record.table("probes").to_parquet(staging / "probes.parquet", index=False)
        heads.to_parquet(staging / "heads.parquet", index=False)
        record.table("ablation").to_parquet(staging / "ablation.parquet", index=False)
        if "scenes" in record.arrays:  # runs recorded before it existed have no per-scene counts
            record.table("scenes").to_parquet(staging / "scenes.parquet", index=False)
        (staging / "summary.json").write_text(json.dumps(record.artifacts["summary"], indent=2, default=str))
        if len(heads):
            write_heads_json(staging / "HEADS.json", heads, done.model.name)
        out.mkdir(parents=True, exist_ok=True)
        for path in staging.iterdir():
            path.replace(out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    best = record.summary.get("best_layer")
    if best is not None:
        table = record.table("probes")
        table = table[table.layer == best].set_index("probe")
        line = ", ".join(f"{name} {table.loc[name, 'same_class_accuracy']:.3f}" for name in table.index)
        typer.echo(f"best layer {best} (quadratic, validation): same-class accuracy {line}")
    typer.echo(f"wrote {out}/probes.parquet, heads.parquet, ablation.parquet, scenes.parquet; run {done.run_id} in {default_store().root}")
