"""``workbench binding MODEL --out DIR``: IsSameObject probes, binding subspace and head AUROC for a ViT."""

from __future__ import annotations

import hashlib
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
    friendly,
    parse_ints,
    record,
    runtime,
    uses_store,
)
from workbench.seam.spec import SpecError


@app.command()
@friendly
@uses_store
def binding(
    model: str = typer.Argument(..., help="dinov2-s14, a tiny-vit-* name, a .safetensors checkpoint, a HF ViT folder or id"),
    out: Path = typer.Option(..., "--out", help="folder for probes.parquet, heads.parquet, ablation.parquet, summary.json"),
    layers: str | None = typer.Option(None, "--layers", help="hidden-state indices, comma-separated (0 = embeddings; default all)"),
    scenes: int = typer.Option(120, "--scenes", help="train scenes (test scenes: half as many)"),
    seed: int = typer.Option(0, "--seed", help="scene and probe seed"),
    epochs: int = typer.Option(15, "--epochs", help="probe epochs (early stopping on held-out train scenes)"),
    head_scenes: int = typer.Option(16, "--head-scenes", help="test scenes for per-head attention AUROC (0 = skip)"),
    probes: str = typer.Option("linear,diagonal,quadratic,lowrank", "--probes", help="pair probes to train"),
    ranks: str = typer.Option("4,16,64", "--ranks", help="binding-subspace ranks to ablate ('' = skip)"),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="random-init network and raw-pixel baselines"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Probe a ViT for object binding on procedural scenes; write the tables and record the run."""
    from workbench.analyses.binding import BindingConfig, run_binding
    from workbench.analyses.heads import write_heads_json
    from workbench.runners.vision import load_vision_model
    from workbench.store import default_store

    where = runtime(device, dtype)  # a missing device fails here, before any work
    if scenes < 8:
        raise SpecError(f"--scenes must be at least 8 (got {scenes}): probes need train, validation and test scenes")
    if epochs < 1:
        raise SpecError(f"--epochs must be at least 1, got {epochs}")
    from workbench.analyses.binding.probes import PROBES

    kinds = tuple(p.strip() for p in probes.split(",") if p.strip())
    unknown = [k for k in kinds if k not in PROBES]
    if unknown or not kinds:
        raise SpecError(f"unknown probe(s) {unknown or probes!r}; choose from {', '.join(PROBES)}")
    wanted = parse_ints(layers)
    loaded = load_vision_model(model, device=where.device, dtype=where.dtype)
    top = loaded.shape.num_layers
    bad = [layer for layer in wanted or () if not 0 <= layer <= top]
    if bad:
        raise SpecError(f"layer(s) {bad} out of range: {loaded.name} has hidden states 0..{top} (0 = embeddings)")
    config = BindingConfig(
        scenes=scenes,
        layers=wanted,
        seed=seed,
        epochs=epochs,
        probes=kinds,
        head_scenes=head_scenes,
        ablation_ranks=parse_ints(ranks) or (),
        random_baseline=baselines,
        pixel_baseline=baselines,
    )
    typer.echo(f"{loaded}", err=True)
    result = run_binding(loaded, config, progress=lambda line: typer.echo(line, err=True))

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        result.probes.to_parquet(staging / "probes.parquet", index=False)
        result.heads.to_parquet(staging / "heads.parquet", index=False)
        result.ablation.to_parquet(staging / "ablation.parquet", index=False)
        (staging / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str))
        if len(result.heads):
            write_heads_json(staging / "HEADS.json", result.heads, loaded.name)
        out.mkdir(parents=True, exist_ok=True)
        for path in staging.iterdir():
            path.replace(out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    data_hash = hashlib.sha256(json.dumps(result.summary["scene_config"], sort_keys=True).encode()).hexdigest()[:16]
    run_id = default_store().put_run(
        "binding",
        loaded.name,
        data_hash,
        params=config.to_dict(),
        head_tables={"heads": result.heads} if len(result.heads) else None,
        arrays={"probes": result.probes, "ablation": result.ablation},
        summary={k: v for k, v in result.summary.items() if k != "config"},
        runtime=record(loaded),
    )
    best = result.summary.get("best_layer")
    if best is not None:
        table = result.probes[result.probes.layer == best].set_index("probe")
        line = ", ".join(f"{name} {table.loc[name, 'same_class_accuracy']:.3f}" for name in table.index)
        typer.echo(f"best layer {best} (quadratic, validation): same-class accuracy {line}")
    typer.echo(f"wrote {out}/probes.parquet, heads.parquet, ablation.parquet; run {run_id} in {default_store().root}")
