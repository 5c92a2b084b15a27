"""A sweep file: models x conditions (intervention sets) x prompts, as executor jobs.

    sweep: masking
    models: [smollm2-135m]
    task: logprob                      # or capture (then give capture: {statistics: [...]})
    data: {source: sample, split: paragraphs}
    params: {window: 256}
    shard_size: 2
    conditions:
      baseline: []
      top-sinks: {mask: [[0, 1], [0, 4]], mode: uniform}       # heads to mask
      gate: [{kind: gate, layer: 3, head: 2, gate: 0.5}]      # interventions as JSON data
    outputs: {dir: results/sweep}

``workbench pipeline sweep FILE --executor ray --address auto`` fans the shards out over a Ray cluster;
each shard is recorded in the store once, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.exec.jobs import JobSpec, make_shards
from workbench.pipeline.data import load_texts, normalise_data
from workbench.pipeline.errors import PipelineError
from workbench.pipeline.spec import read_yaml
from workbench.seam.spec import SpecError
from workbench.store.record import StepOutput, write_parquet
from workbench.store.store import Store, content_hash

KEYS = {"sweep", "description", "model", "models", "device", "dtype", "task", "data", "params", "shard_size",
        "capture", "conditions", "outputs"}  # fmt: skip


@dataclass
class SweepSpec:
    name: str
    jobs: list[JobSpec]
    prompts: list[str]
    shard_size: int
    out: Path
    device: str | None = None  # the local executor's device name (None = auto)


def load_sweep(path: Path, out: Path | None = None) -> SweepSpec:
    path = Path(path)
    data = read_yaml(path)
    extra = sorted(set(data) - KEYS)
    if extra:
        raise PipelineError(f"unknown sweep key(s) {extra}; known: {sorted(KEYS)}")
    models = data.get("models") or ([data["model"]] if data.get("model") else None)
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise PipelineError("the sweep needs 'models:' (a list of model names) or 'model:'")
    sets = normalise_data(data.get("data"), path.parent)
    if list(sets) != ["default"]:
        raise PipelineError("a sweep's data: is one data set ({source: ...} or {texts: [...]})")
    prompts = load_texts(sets["default"])
    conditions = data.get("conditions") or {"baseline": []}
    if not isinstance(conditions, dict):
        raise PipelineError(
            "conditions: must map a name to interventions (a list) or {mask: [[layer, head], ...]}"
        )
    from workbench.pipeline.spec import check_runtime

    device, dtype = check_runtime(data.get("device"), data.get("dtype"))
    shard_size = data.get("shard_size", 4)
    if not isinstance(shard_size, int) or shard_size < 1:
        raise PipelineError(f"shard_size must be an integer >= 1, got {shard_size!r}")
    jobs = []
    for model in models:
        for label, value in conditions.items():
            try:
                job = JobSpec(
                    task=str(data.get("task", "logprob")),
                    model=model,
                    dtype=dtype,
                    capture=data.get("capture"),
                    interventions=condition_interventions(str(label), value),
                    params=data.get("params") or {},
                    label=str(label),
                )
                job.validate()
            except SpecError as error:
                raise PipelineError(f"condition {label!r}: {error}") from None
            jobs.append(job)
    out = out or Path((data.get("outputs") or {}).get("dir", f"results/{data.get('sweep') or path.stem}"))
    return SweepSpec(str(data.get("sweep") or path.stem), jobs, prompts, shard_size, Path(out), device)


def condition_interventions(label: str, value) -> list[dict]:
    from workbench.seam.interventions import Intervention, mask_heads

    if isinstance(value, list):
        return [Intervention.from_dict(item).to_dict() for item in value]
    if isinstance(value, dict) and "mask" in value:
        extra = sorted(set(value) - {"mask", "mode", "scope"})
        if extra:
            raise PipelineError(f"condition {label!r}: unknown key(s) {extra}; use mask, mode, scope")
        heads = value["mask"]
        if not isinstance(heads, list) or not all(isinstance(h, list) and len(h) == 2 for h in heads):
            raise PipelineError(f"condition {label!r}: mask must be a list of [layer, head] pairs")
        items = mask_heads(
            [tuple(h) for h in heads], value.get("mode", "uniform"), value.get("scope", "both")
        )
        return [item.to_dict() for item in items]
    raise PipelineError(
        f"condition {label!r} must be a list of interventions or {{mask: [[layer, head], ...]}}"
    )


def run_sweep(spec: SweepSpec, executor, store: Store, echo=print) -> pd.DataFrame:
    """Run every job over every shard; write ``sweep.parquet`` and ``summary.json``; record the sweep."""
    from workbench.exec import run_jobs

    shards = make_shards(spec.prompts, spec.shard_size)
    echo(f"sweep {spec.name}: {len(spec.jobs)} jobs x {len(shards)} shards on {executor!r}")
    table = run_jobs(executor, spec.jobs, shards)
    numeric = [c for c in table.columns if c not in ("label", "model", "prompt", "layer", "head", "kv_head")]
    means = table.groupby(["model", "label"], sort=False)[numeric].mean().reset_index()
    summary = {
        "sweep": spec.name,
        "jobs": len(spec.jobs),
        "shards": len(shards),
        "prompts": len(spec.prompts),
        "means": means.to_dict(orient="records"),
    }
    write_parquet(table, spec.out / "sweep.parquet")
    (spec.out / "summary.tmp").write_text(json.dumps(summary, indent=2, default=str))
    (spec.out / "summary.tmp").replace(spec.out / "summary.json")
    from workbench.pipeline.runner import write_run

    record = StepOutput(
        arrays={"result": table},
        summary=summary,
        kind="sweep",
        input_hash=content_hash(spec.prompts),
        spec={"jobs": [job.to_dict() for job in spec.jobs], "shard_size": spec.shard_size},
    )
    write_run(store, record, model=",".join(dict.fromkeys(job.model for job in spec.jobs)))
    return table
