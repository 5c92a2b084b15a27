"""Run a pipeline step by step, or one Step on its own; the only module that writes runs to the store.

``run_step`` runs one analysis Step on its own (the CLI's commands, notebooks): options validated, the
device resolved and the store checked before any work, then exactly one run recorded (``write_run``).

A step's key hashes (step kind, step version, its config, the model, its data, the content of the files
its options name, its inputs' keys). A step whose key is in the store is read back instead of run, so
re-running skips finished steps (an edited input file reruns the step that reads it, and the steps that
read that step's output), and a run killed at any point and restarted redoes only the unfinished step
(the store writes a record atomically: staging folder + rename, then one transaction). Files in the
output folder are written from the recorded outputs on every run, each atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.pipeline.data import load_texts, texts_hash
from workbench.pipeline.spec import PipelineSpec
from workbench.pipeline.steps.base import Context, Step
from workbench.store.record import StepOutput
from workbench.store.store import Store, content_hash, default_store, files_hash

FORMAT = 1  # bump when the recorded form of every step changes


@dataclass
class PipelineResult:
    spec: PipelineSpec
    outputs: dict[str, StepOutput]
    run_ids: dict[str, str]
    status: dict[str, str]  # step id -> "ran" | "cached"
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def heads(self):
        """The selected heads (the HEADS.json step's table), or None."""
        return self.outputs[self.spec.heads].table("heads") if self.spec.heads else None


def step_key(
    spec: PipelineSpec,
    config: dict,
    version: int,
    data_hash: str | None,
    inputs: list[str],
    device_type: str = "cpu",
    files: dict[str, list[str | None]] | None = None,
) -> str:
    """The step's store key; a step run on another device type (cuda) gets its own key (CPU keys as before).

    ``files``: the content hashes of the files its options name (``input_files_hash``): a config holds only
    their paths, so without them an edited HEADS.json would read back the result of the old one. A step
    that names no file keeps the key it had before files entered (its stored runs stay reusable)."""
    body = {k: v for k, v in config.items() if k != "id"}
    parts = ("pipeline-step", FORMAT, version, body, spec.model, spec.dtype, data_hash, inputs)
    extra = (() if device_type == "cpu" else (device_type,)) + ((("files", files),) if files else ())
    return content_hash(*parts, *extra)


def input_files_hash(step: Step, config: dict, spec: PipelineSpec) -> dict[str, list[str | None]]:
    """``{option: [content hash, ...]}`` of the files and folders the step reads (``Step.input_files``), read
    now: just before the step runs, after earlier steps wrote theirs. A missing file hashes None (the
    step's validation or its run says it is missing)."""
    return files_hash(step.input_files(config, spec))


def _runtime(spec: PipelineSpec, executor) -> dict:
    """Where the pipeline's steps run: the executor's device (a local one) and the resolved dtype."""
    from workbench.devices import dtype_name, resolve_device, resolve_dtype

    device = getattr(executor, "device", None)
    device = device if device is not None and not isinstance(device, str) else resolve_device(spec.device)
    return {"device": str(device), "dtype": dtype_name(resolve_dtype(spec.dtype, device))}


def load_output(store: Store, run_id: str) -> StepOutput:
    return StepOutput(
        head_tables={name: store.head_table(run_id, name) for name in store.head_table_names(run_id)},
        arrays={name: store.array(run_id, name) for name in store.array_names(run_id)},
        summary=store.summary(run_id),
    )


def run_pipeline(
    spec: PipelineSpec,
    *,
    store: Store | None = None,
    executor=None,
    echo=print,
) -> PipelineResult:
    """Run (or resume) ``spec``; returns every step's output and where it is recorded."""
    from workbench.exec import LocalExecutor

    store = store or default_store()
    store.check()  # a corrupt or locked store fails here, before any model is loaded
    executor = executor or LocalExecutor(store)
    ctx = Context(spec, store, executor, Path(spec.out), echo)
    runtime = _runtime(spec, executor)  # a missing device fails here, before any step runs
    device_type = runtime["device"].split(":")[0]
    data_hashes = {name: texts_hash(load_texts(item)) for name, item in spec.data.items()}
    result = PipelineResult(spec, {}, {}, {})
    total = len(spec.steps)
    echo(f"pipeline {spec.name}: {total} steps on {spec.model}; store {store.root}; output {spec.out}/")
    for number, config in enumerate(spec.steps, 1):
        step_id = config["id"]
        implementation = spec.implementations[step_id]
        inputs = implementation.inputs(config)
        data_hash = data_hashes[config.get("data", "default")] if implementation.wants_data(config) else None
        files = input_files_hash(implementation, config, spec)
        input_keys = [result.run_ids[i] for i in inputs]
        key = step_key(spec, config, implementation.version, data_hash, input_keys, device_type, files)
        input_outputs = {i: result.outputs[i] for i in inputs}
        started = time.perf_counter()
        if store.has(key):
            status = "cached"
        else:
            ctx.step_key, ctx.config = key, config
            units = ctx.units(config)
            resumed = f", continuing after {len(units)} finished unit(s)" if len(units) else ""
            if not resumed and ctx.work_file(config, ".safetensors").exists():
                resumed = ", continuing from its saved training state"
            echo(f"[{number}/{total}] {step_id} ({config['step']}){resumed} ...")
            getattr(_pipeline_model(ctx), "backends", set()).clear()  # the step records its own backends
            output = implementation.run(ctx, config, input_outputs)
            record_step(store, spec, config, key, output, inputs, _with_backend(runtime, ctx))
            for partial in ctx.out.glob(f".work/{step_id}-{key}*"):
                partial.unlink(missing_ok=True)  # recorded in the store now: the next run reads it back whole
            status = "ran"
        output = load_output(store, key)  # the recorded form, so a resumed run materialises the same files
        result.outputs[step_id], result.run_ids[step_id], result.status[step_id] = output, key, status
        ctx.run_ids[step_id] = key
        result.files += implementation.materialize(ctx, config, output, input_outputs)
        result.seconds[step_id] = time.perf_counter() - started
        note = "already done, read back" if status == "cached" else f"done in {result.seconds[step_id]:.1f}s"
        echo(f"[{number}/{total}] {step_id} ({config['step']}): {note} (run {key})")
    result.files.append(write_summary(spec, result))
    record = StepOutput(
        summary={"pipeline": spec.name, "run_ids": result.run_ids, "out": str(spec.out)},
        kind="pipeline",
        input_hash=content_hash(result.run_ids),
        spec={"pipeline": spec.name, "steps": [c["id"] for c in spec.steps]},
        params={"run_ids": result.run_ids},
    )
    write_run(store, record, model=spec.model, runtime=runtime)
    return result


def _pipeline_model(ctx: Context):
    """The pipeline's model, when this process has loaded it (else None)."""
    loader = getattr(ctx.executor, "_models", None) or {}
    return loader.get((ctx.pipeline.model, ctx.pipeline.dtype)) or getattr(ctx, "_model", None)


def _with_backend(runtime: dict, ctx: Context) -> dict:
    """``runtime`` plus the attention backend(s) that the step's work used, when this process ran it."""
    return {**runtime, "backend": getattr(_pipeline_model(ctx), "backend", None)}


def record_step(
    store: Store, spec: PipelineSpec, config: dict, key: str, output: StepOutput, inputs, runtime: dict | None = None
) -> str:
    identity = StepOutput(
        kind="pipeline-step",
        input_hash=content_hash(inputs),
        spec={k: v for k, v in config.items() if k != "id"},
        params={"step": config["step"], "id": config["id"], "pipeline": spec.name, "inputs": inputs},
    )
    return write_run(store, output, model=spec.model, runtime=runtime, run_id=key, identity=identity)


def write_run(
    store: Store,
    record: StepOutput,
    *,
    model: str,
    runtime: dict | None = None,
    run_id: str | None = None,
    identity: StepOutput | None = None,
) -> str:
    """Record ``record`` as one store run (content-hashed id unless ``run_id``); returns its id.

    The run's kind, input hash, spec and params are the record's own (a Step run on its own, a shard, a
    sweep) unless ``identity`` names them (a pipeline step, recorded under its content key)."""
    name = identity or record
    if name.kind is None:
        raise ValueError("a run record needs a kind to be written")
    runtime = dict(runtime or {})
    if record.backend is not None:
        runtime["backend"] = record.backend
    return store.put_run(
        name.kind,
        model,
        name.input_hash or content_hash(name.params),
        spec=name.spec,
        params=name.params,
        head_tables=record.head_tables,
        arrays=record.arrays,
        summary=record.summary,
        run_id=run_id,
        runtime=runtime or None,
    )


@dataclass
class StepRun:
    """A Step run on its own: its record, the store run id and the model it ran on."""

    output: StepOutput
    run_id: str
    model: object


def run_step(
    step: Step | str,
    options,
    *,
    store: Store | None = None,
    model=None,
    inputs: dict[str, StepOutput] | None = None,
    texts: list[str] | None = None,
    echo=print,
) -> StepRun:
    """Run one analysis Step on its own, as a one-step pipeline: the device is resolved and the options
    validated before anything else (so a bad one writes nothing), the store checked before the model
    loads, then the Step runs and exactly one run is recorded. ``model``: one already loaded (a notebook's,
    a sweep worker's); ``texts``: the texts of a Step that reads a data set (a sweep's prompt)."""
    from workbench.devices import resolve_runtime, run_record
    from workbench.pipeline.registry import load_step

    step = load_step(step) if isinstance(step, str) else step
    where = resolve_runtime(options.device, options.dtype)  # a missing device fails here, before any work
    step.validate_options(options)
    store = store or default_store()
    store.check()  # a corrupt or locked store fails here, before any model is loaded
    ctx = Context(None, store, None, Path("."), echo, loaded=model, where=where, model_name=options.model,
                  data=None if texts is None else {"default": list(texts)})
    output = step.execute(ctx, options, inputs or {})
    if output.kind is None:
        output.kind = step.record_kind or step.kind
    loaded = ctx.model()
    run_id = write_run(store, output, model=loaded.name, runtime=run_record(loaded))
    return StepRun(output, run_id, loaded)


def write_summary(spec: PipelineSpec, result: PipelineResult) -> Path:
    """summary.json: each step's run id and summary (the same after a resume as after one clean run)."""
    data = {
        "pipeline": spec.name,
        "model": spec.model,
        "steps": [
            {
                "id": c["id"],
                "step": c["step"],
                "run_id": result.run_ids[c["id"]],
                "summary": {k: v for k, v in result.outputs[c["id"]].summary.items() if k != "universe"},
            }
            for c in spec.steps
        ],
        "heads_file": "HEADS.json" if spec.heads else None,
    }
    path = Path(spec.out) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
    return path
