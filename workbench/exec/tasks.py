"""What one prompt of a job computes, and the shard runner every executor shares.

A task is ``(model, job, prompt, store) -> DataFrame rows``; ``run_shard`` applies it to each prompt of a shard
and records the rows in the store under the shard's content key. Because local and Ray workers call the
same ``run_shard``, their store contents are the same.

Why ``logprob``, ``capture`` and ``niah`` are tasks and not Steps: each is a per-prompt primitive under a
job's interventions (one prompt's metric row), which a Step (an analysis over a data set, with its own
record) is built from, not the other way round: ``capture`` is what the capture Step's shards run,
``logprob``/``niah`` are the metrics of the validate Step's conditions. They validate no option of their
own (the Step that builds the job has validated its options; the defaults they fall back to are read from
the Step's options dataclass, never typed here) and record nothing themselves: the shard's rows, and a
capture's full record, go through ``pipeline.runner.write_run``. The ``step`` task runs a whole Step.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import pandas as pd
import torch

from workbench.exec.jobs import JobSpec, Shard, ShardResult, shard_key
from workbench.store.record import StepOutput
from workbench.store.store import Store, content_hash

TaskFunction = Callable[..., pd.DataFrame]
TASKS: dict[str, TaskFunction] = {}
TASK_FILES: dict[str, Callable[[JobSpec], dict[str, list[str]]]] = {}


def register_task(name: str, files: Callable[[JobSpec], dict[str, list[str]]] | None = None):
    """Decorator: make ``function(model, job, prompt, store) -> DataFrame`` runnable as ``JobSpec(task=name)``.

    ``files(job) -> {param: [path, ...]}``: the files the task reads through the job's params; their
    content is part of each shard's key (``jobs.shard_key``), so an edited file is not read back stale."""

    def decorate(function: TaskFunction) -> TaskFunction:
        TASKS[name] = function
        if files is not None:
            TASK_FILES[name] = files
        return function

    return decorate


def task_files(job: JobSpec) -> dict[str, list[str]]:
    """``{param: [path, ...]}``: the files ``job``'s task reads (none for a task that declares none)."""
    files = TASK_FILES.get(job.task)
    return files(job) if files is not None else {}


def _step_files(job: JobSpec) -> dict[str, list[str]]:
    """The files the ``step`` task's Step reads: the ``path`` fields of its options (as ``step_task`` parses
    them). Options the Step cannot parse name no file here; running the task reports them."""
    from workbench.pipeline.options import from_config, input_paths
    from workbench.pipeline.registry import load_step
    from workbench.seam.spec import SpecError  # PipelineError and OptionError are SpecErrors

    try:
        step = load_step(str(job.params.get("step")))
        if step.Options is None or step.plumbing:
            return {}
        options = from_config(step.Options, dict(job.params.get("options") or {}), where="", model=job.model)
    except SpecError:
        return {}
    return {f"options.{name}": paths for name, paths in input_paths(step.Options, options).items()}


def _niah_files(job: JobSpec) -> dict[str, list[str]]:
    """The ``niah`` task's haystack file or folder (its ``params`` are the NIAH Step's options)."""
    from workbench.pipeline.options import input_paths
    from workbench.pipeline.steps.retrieval import NiahOptions

    return input_paths(NiahOptions, job.params)


def _encode(model, job: JobSpec, prompt: str) -> torch.Tensor:
    """The prompt's ids; ``params.chat`` left out keeps the model's own default."""
    chat = {"chat": bool(job.params["chat"])} if job.params.get("chat") is not None else {}
    return model.encode(prompt, window=job.params.get("window"), **chat)


@register_task("logprob")
def logprob_task(model, job: JobSpec, prompt: str, store: Store) -> pd.DataFrame:
    """Mean next-token log-probability and top-1 accuracy over the prompt (teacher forcing)."""
    ids = _encode(model, job, prompt)
    if ids.shape[-1] < 2:
        raise ValueError(f"prompt {prompt[:40]!r} has fewer than 2 tokens: nothing to predict")
    logits = model.logits(ids, interventions=job.intervention_objects())[0, :-1].double()
    targets = ids[0, 1:].to(logits.device)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
    return pd.DataFrame(
        {
            "tokens": [int(ids.shape[-1])],
            "mean_logprob": [float(logprobs.mean())],
            "top1_accuracy": [float((logits.argmax(-1) == targets).double().mean())],
        }
    )


@register_task("capture")
def capture_task(model, job: JobSpec, prompt: str, store: Store) -> pd.DataFrame:
    """The prompt's head table (mean of each row statistic over queries >= 1), one row per head.

    ``params.save_captures`` also records the full capture (per-token statistics, pooled map) for the app.
    """
    spec = job.capture_spec()
    if spec is None:
        raise ValueError("task 'capture' needs a capture spec (JobSpec.capture)")
    from workbench.pipeline.steps.capture import capture_ids

    ids = _encode(model, job, prompt)
    capture, record = capture_ids(model, ids, spec, interventions=job.intervention_objects())
    table = capture.head_table()
    if job.params.get("save_captures"):
        from workbench.devices import run_record
        from workbench.pipeline.runner import write_run

        write_run(store, record, model=model.name, runtime=run_record(model))
    table.insert(0, "tokens", int(ids.shape[-1]))
    return table


@register_task("step", files=_step_files)
def step_task(model, job: JobSpec, prompt: str, store: Store) -> pd.DataFrame:
    """An analysis Step on the prompt (its text), as its command would run it: ``params.step`` names the
    Step (``workbench pipeline steps``), ``params.options`` its options as in a pipeline file. The Step's
    run is recorded by the pipeline runner (the same record as the command's for the same options and
    text); the row holds its run id and the summary's numbers. The job's interventions are not applied."""
    from workbench.pipeline.options import from_config
    from workbench.pipeline.registry import load_step
    from workbench.pipeline.runner import run_step

    step = load_step(str(job.params.get("step")))
    if step.Options is None or step.plumbing:
        raise ValueError(f"step {job.params.get('step')!r} is not an analysis Step (it has no options class)")
    where = f"task step {step.kind!r}"
    options = from_config(step.Options, dict(job.params.get("options") or {}), where=where, model=model.name)
    done = run_step(step, options, model=model, store=store, texts=[prompt], echo=lambda *_: None)
    numbers = {k: [v] for k, v in done.output.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return pd.DataFrame({"run_id": [done.run_id], "kind": [done.output.kind], **numbers})


_BUILDERS: dict = {}  # (model name, haystack) -> PromptBuilder: the haystack is tokenised once per worker


@register_task("niah", files=_niah_files)
def niah_task(model, job: JobSpec, prompt: str, store: Store) -> pd.DataFrame:
    """One needle-in-a-haystack run. ``prompt`` is JSON ``{needle, question, answer, length, depth}``;
    ``params``: ``haystack`` (synthetic or a path), ``max_new_tokens``, ``chat``; one left out keeps the
    NIAH Step's default (``NiahOptions``; ``chat``: the prompt builder's)."""
    from workbench.analyses.retrieval.haystack import Needle, PromptBuilder, read_haystack
    from workbench.analyses.retrieval.niah import run_prompts
    from workbench.pipeline.options import defaults
    from workbench.pipeline.steps.retrieval import NiahOptions

    default = defaults(NiahOptions)
    item = json.loads(prompt)
    haystack = str(job.params.get("haystack", default["haystack"]))
    key = (model.name, haystack, job.params.get("chat"))
    if key not in _BUILDERS:
        _BUILDERS[key] = PromptBuilder(model, read_haystack(haystack), chat=job.params.get("chat"))
    needle = Needle(item["needle"], item["question"], item["answer"])
    built = _BUILDERS[key].build(needle, int(item["length"]), float(item["depth"]))
    runs = run_prompts(
        model,
        [built],
        interventions=job.intervention_objects(),
        max_new_tokens=int(job.params.get("max_new_tokens", default["max_new_tokens"])),
        progress=False,
    ).runs
    return pd.DataFrame(
        {
            "tokens": [int(runs["tokens"][0])],
            "success": [float(runs["success"][0])],
            "rouge_recall": [float(runs["rouge_recall"][0])],
            "response": [str(runs["response"][0])],
        }
    )


def _log_attempt(store: Store, key: str) -> None:
    """Append one line per attempt at a shard (who, when): retries show up as extra lines."""
    folder = store.root / "shard-attempts"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.log", "a") as handle:
        handle.write(f"{os.getpid()} {time.time():.3f}\n")


def run_shard(model, job: JobSpec, shard: Shard, store: Store) -> ShardResult:
    """Compute one shard and record it under its content key; a shard already recorded is read back."""
    from workbench.devices import run_record

    key = shard_key(job, shard)
    if store.has(key):
        return ShardResult(key, job, shard.start, store.array(key, "result"), cached=True)
    _log_attempt(store, key)
    task = TASKS[job.task]
    torch.manual_seed(job.seed)
    used = getattr(model, "backends", None)
    before = set(used) if used is not None else set()
    if used is not None:
        used.clear()  # the shard records the backends it used, not those of the model's earlier work
    frames = []
    for offset, prompt in enumerate(shard.prompts):
        rows = task(model, job, prompt, store)
        rows.insert(0, "prompt", shard.start + offset)
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True)
    from workbench.pipeline.runner import write_run

    record = StepOutput(
        arrays={"result": frame},
        summary={"job": job.key, "task": job.task, "label": job.label, "rows": len(frame)},
        kind="shard",
        input_hash=content_hash(shard.to_dict()),
        spec=job.to_dict(),
        params={"start": shard.start, "prompts": len(shard.prompts)},
    )
    # where it ran; the key stays the job's (any executor computes the same shard)
    write_run(store, record, model=job.model, runtime=run_record(model), run_id=key)
    if used is not None:
        used |= before  # a caller that reads the model's backends afterwards (a pipeline step) sees all of them
    return ShardResult(key, job, shard.start, frame)
