"""LoFiT Steps (Yin, Ye, Durrett 2024; workbench.analyses.lofit): ``lofit`` (step 1: learn a scale per
head's output with an L1 penalty, rank heads by the scale's norm), ``lofit-train`` (step 2: learn offsets
for chosen heads), ``lofit-eval`` (MC1/MC2 or accuracy, with or without offsets), ``lofit-compare`` (base
vs LoFiT vs random vs retrieval heads at equal parameter count, over seeds) and ``lofit-fold`` (the offsets
folded into o_proj biases, for export). ``workbench lofit select|train|eval|compare|fold`` run them;
training knobs left out keep ``TrainConfig``'s defaults for the task.

A ``lofit-train`` record holds its artifact (the offsets as the array ``offsets``, lofit.json and the
training log in the summary), so the command and a pipeline write the same files from it
(``write_train_files``): a pipeline writes ``OUT/<step id>/`` (lofit.safetensors, lofit.json, log.json;
``workbench lofit eval --lofit OUT/<step id>`` reads it), again from the store when the step is cached.
``lofit-fold`` writes its checkpoint only through the command (see ``LofitFoldStep``).

    - id: lofit
      step: lofit
      task: truthfulqa        # or clutrr
      file: null              # task file (default: the small sample shipped with the workbench)
      limit: 16               # first N items
      steps: 20               # optimiser steps (default: the configured epochs)
      epochs: 1
      seed: 0

Head table: ``score`` = ||A||_2 of the learned scale, ``rank``. Pick the top K with a select step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.pipeline.options import OptionError, StepOptions, flag, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput, write_parquet

TASKS = ("truthfulqa", "clutrr")
TASK_HELP = "truthfulqa (DPO on answer pairs; MC1/MC2) or clutrr (completion-only SFT; accuracy)"
DATA_HELP = "CSV/JSON/JSONL data file (default: the shipped sample for the task)"
PART_HELP = "use only part i of n of the file (fixed seeded split), e.g. 1/2"


@dataclass(frozen=True, kw_only=True)
class LofitData(StepOptions):
    task: str = help_field("truthfulqa", TASK_HELP)
    file: Path | None = help_field(None, DATA_HELP, path=True)
    part: str | None = help_field(None, PART_HELP)
    limit: int | None = help_field(None, "use at most N questions/items")

    def check(self) -> None:
        from workbench.analyses.lofit import parse_part

        _check_task(self.task)
        if self.limit is not None and self.limit < 1:
            raise OptionError(f"--limit must be at least 1, got {self.limit}")
        parse_part(self.part)

    def items(self, file=None, part=None, limit=None, *, default: bool = True):
        """(path, items) of the task file (``file``/``part``/``limit`` override the options')."""
        from workbench.analyses.lofit import load_task, parse_part, sample_path

        file, part, limit = (file, part, limit) if not default else (self.file, self.part, self.limit)
        path = file if file is not None else sample_path(self.task)
        return path, load_task(self.task, path, parse_part(part), limit)


def _check_task(task: str) -> None:
    from workbench.analyses.lofit.data import TASKS as KNOWN

    if task not in KNOWN:
        raise OptionError(f"unknown --task {task!r}; choose one of {', '.join(KNOWN)}")


def _identity(path, params: dict) -> dict:
    from workbench.store.store import content_hash

    return {"input_hash": content_hash(str(path), params), "params": params}


@dataclass(frozen=True, kw_only=True)
class LofitSelectOptions(LofitData):
    epochs: int | None = help_field(None, "epochs (default 5)")
    steps: int | None = help_field(None, "cap on optimiser steps (CPU: keep small)")
    batch_size: int | None = help_field(None, "items per optimiser step (default 8)")
    lr: float | None = help_field(None, "default: spec §5 (truthfulqa 5e-3, clutrr 5e-4)")
    l1: float | None = help_field(None, "L1 weight on the scales (truthfulqa 5e-4, clutrr 5e-3)")
    seed: int | None = help_field(None, "seed of the scale initialisation (default 0)")


class LofitStep(Step):
    kind = "lofit"
    record_kind = "lofit_select"
    Options = LofitSelectOptions

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "kv_head", "score", "rank"}

    def validate_options(self, o: LofitSelectOptions) -> None:
        o.check()
        for key in ("steps", "epochs", "batch_size"):
            value = getattr(o, key)
            if value is not None and value < 1:
                raise OptionError(f"--{key.replace('_', '-')} must be >= 1")
        if o.file is not None and not Path(o.file).exists():
            raise OptionError(f"task file {str(o.file)!r} does not exist")

    def execute(self, ctx: Context, o: LofitSelectOptions, inputs) -> StepOutput:
        from workbench.analyses import lofit

        path, items = o.items()
        train = lofit.TrainConfig.defaults(
            o.task, 1, epochs=o.epochs, steps=o.steps, batch_size=o.batch_size, lr=o.lr, l1=o.l1, seed=o.seed
        )
        table, scales, log = lofit.select_heads(
            ctx.model(), items, train, progress=True, checkpoint=ctx.training_checkpoint()
        )
        params = table.attrs.pop("params", {})
        summary = {
            "task": o.task,
            "items": len(items),
            "top": [[int(r.layer), int(r.head), round(float(r.score), 5)] for r in table.head(10).itertuples()],
        }
        if isinstance(log, dict):
            summary["log"] = {k: v for k, v in log.items() if isinstance(v, (int, float, str))}
        return StepOutput(head_tables={"heads": table}, summary=summary, artifacts={"scales": scales, "log": log},
                          **_identity(path, params))  # fmt: skip

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.plots import head_heatmap

        return [
            head_heatmap(output.table("heads"), "score", title=f"{config['id']}: ||A|| of the learned scale")
        ]


@dataclass(frozen=True, kw_only=True)
class LofitTrainOptions(LofitData):
    heads: Path | None = help_field(None, "HEADS.json (from `lofit select` or any head finder)", path=True)
    k: int = help_field(8, "number of heads (top K of --heads, or K random heads)")
    random_seed: int | None = help_field(None, "ignore --heads: K random heads drawn with this seed")
    val: Path | None = help_field(None, "validation file: keep the offsets with the lowest val loss", path=True)
    val_part: str | None = help_field(None, PART_HELP)
    val_limit: int | None = help_field(None, "use at most N validation items")
    epochs: int | None = help_field(None, "epochs (default 5)")
    steps: int | None = help_field(None, "cap on optimiser steps")
    eval_every: int | None = help_field(None, "validate every N steps (default: per epoch)")
    batch_size: int | None = help_field(None, "items per optimiser step (default 8)")
    lr: float | None = help_field(None, "default 1e-2 (spec §5)")
    seed: int | None = help_field(None, "seed of the offsets' initialisation (default 0)")


class LofitTrainStep(Step):
    """Step 2: learn an offset vector per chosen head (model frozen); the artifact is the record's."""

    kind = "lofit-train"
    version = 2  # 2: the record holds the artifact (version-1 records lack the offsets: not reused)
    record_kind = "lofit_train"
    Options = LofitTrainOptions

    def validate_options(self, o: LofitTrainOptions) -> None:
        o.check()
        if o.heads is None and o.random_seed is None:
            raise OptionError("give --heads HEADS.json (e.g. from `workbench lofit select`) or --random SEED")

    def execute(self, ctx: Context, o: LofitTrainOptions, inputs) -> StepOutput:
        from workbench.analyses.heads import read_heads_json, top_heads
        from workbench.analyses.lofit import TrainConfig, random_heads, train_offsets

        config = TrainConfig.defaults(o.task, 2, epochs=o.epochs, steps=o.steps, batch_size=o.batch_size, lr=o.lr,
                                      seed=o.seed, eval_every=o.eval_every)  # fmt: skip
        path, items = o.items()
        val_items = o.items(o.val, o.val_part, o.val_limit, default=False)[1] if o.val is not None else None
        table = read_heads_json(o.heads) if o.random_seed is None else None
        if table is not None and not 1 <= o.k <= len(table):
            raise OptionError(f"--k must be between 1 and {len(table)} (the heads in {o.heads}), got {o.k}")
        model = ctx.model()
        if table is not None:
            chosen, scores, source = top_heads(table, o.k), [float(s) for s in table["score"].head(o.k)], str(o.heads)
        else:
            chosen, scores, source = random_heads(model, o.k, o.random_seed), None, f"random:{o.random_seed}"
        artifact, log = train_offsets(model, chosen, items, config, val_items=val_items, scores=scores, progress=True,
                                      extra_params={"heads_from": source})  # fmt: skip
        summary = {"heads": artifact.heads, "final_loss": log["loss"][-1],
                   "artifact": artifact.to_json(), "log": log}  # fmt: skip
        return StepOutput(arrays={"offsets": artifact.to_frame()}, summary=summary, **_identity(path, artifact.params))

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return write_train_files(ctx.out / config["id"], output)


LOG = "log.json"  # training and validation losses (which step was kept), beside the artifact


def train_artifact(output: StepOutput):
    """The ``LofitArtifact`` of a lofit-train record, fresh from ``execute`` or read back from the store."""
    from workbench.analyses.lofit import LofitArtifact

    return LofitArtifact.from_record(output.summary["artifact"], output.table("offsets"))


def write_train_files(folder: Path, output: StepOutput) -> list[Path]:
    """A lofit-train record's files in ``folder``: the artifact (lofit.safetensors + lofit.json) and
    log.json. The one writer of them (the command, a pipeline), from the record alone, so a step read
    back from the store writes the same bytes as the run that recorded it."""
    from workbench.analyses.lofit.artifact import META, TENSORS
    from workbench.jsonfiles import write_json

    folder = train_artifact(output).save(folder)
    write_json(folder / LOG, output.summary["log"])
    return [folder / TENSORS, folder / META, folder / LOG]


@dataclass(frozen=True, kw_only=True)
class LofitEvalOptions(LofitData):
    lofit: Path | None = help_field(None, "LoFiT artifact folder (none: the base model)", path=True)
    batch_size: int = help_field(16, "items per forward pass")


class LofitEvalStep(Step):
    """MC1/MC2 (truthfulqa) or accuracy (clutrr) of the base model or of the model with LoFiT offsets."""

    kind = "lofit-eval"
    record_kind = "lofit_eval"
    Options = LofitEvalOptions

    def validate_options(self, o: LofitEvalOptions) -> None:
        o.check()

    def execute(self, ctx: Context, o: LofitEvalOptions, inputs) -> StepOutput:
        from workbench.analyses.lofit import LofitArtifact, evaluate

        artifact = LofitArtifact.load(o.lofit) if o.lofit is not None else None
        if artifact is not None and artifact.task != o.task:
            raise OptionError(f"{o.lofit} was trained for task {artifact.task!r}, not {o.task!r}")
        path, items = o.items()
        model = ctx.model()
        interventions = []
        if artifact is not None:
            artifact.check_model(model)
            interventions = artifact.interventions()
        result = evaluate(model, o.task, items, interventions, batch_size=o.batch_size, progress=True)
        result.update({"model": model.name, "task": o.task, "data": str(path), "lofit": str(o.lofit) if o.lofit else None})
        params = {"lofit": str(o.lofit), "part": o.part, "limit": o.limit}
        return StepOutput(summary=result, **_identity(path, params))


OUT_HELP = "folder for every unit's files and the tables; resumable (finished units are skipped)"


@dataclass(frozen=True, kw_only=True)
class LofitCompareOptions(StepOptions):
    task: str = help_field("truthfulqa", TASK_HELP)
    out: Path = help_field(help=OUT_HELP, path=True, output=True)  # written, not read: not in the key
    train: Path = help_field(help="data file of step 1 (head selection) and step 2 (offsets)", path=True)
    val: Path = help_field(help="validation file: keep the offsets with the lowest val loss", path=True)
    test: Path = help_field(help="data file every condition is evaluated on", path=True)
    train_part: str | None = help_field(None, PART_HELP)
    val_part: str | None = help_field(None, PART_HELP)
    test_part: str | None = help_field(None, PART_HELP)
    train_limit: int | None = help_field(None, "use at most N training items")
    val_limit: int | None = help_field(None, "use at most N validation items")
    test_limit: int | None = help_field(None, "use at most N test items")
    ks: tuple[int, ...] = help_field((8, 27), "comma-separated K values (heads trained per condition)")
    seeds: tuple[int, ...] = help_field((0, 1), "comma-separated seeds (one selection and one training each)")
    select_steps: int | None = help_field(None, "cap on step-1 optimiser steps (default: all epochs)")
    train_steps: int | None = help_field(None, "cap on step-2 optimiser steps (default: all epochs)")
    eval_every: int | None = help_field(None, "validate every N steps (default: per epoch)")
    batch_size: int = help_field(8, "items per optimiser step, both steps")
    lr: float | None = help_field(None, "step-2 learning rate (default 1e-2)")
    max_prompt: int | None = help_field(None, "truncate prompts to N tokens (default: the task's)")
    max_target: int | None = help_field(None, "truncate answers to N tokens (default: the task's)")
    retrieval_heads: Path | None = help_field(None, "HEADS.json of retrieval heads (a 4th condition)", path=True)


def _at_least_one(options, *names: str) -> None:
    for name in names:
        value = getattr(options, name)
        if value is not None and value < 1:
            raise OptionError(f"{flag(name)} must be at least 1, got {value}")


def _records(frame) -> list[dict]:
    """A DataFrame as JSON records (NaN -> null), for a run's summary."""
    import json

    return json.loads(frame.to_json(orient="records"))


class LofitCompareStep(Step):
    """Base vs LoFiT heads vs K random heads (vs K retrieval heads) at equal parameter count, over seeds.

    Every unit (a selection, a training, an evaluation) is written under ``out`` as it finishes and
    skipped when its file is there (``analyses.lofit.compare``), so the Step resumes inside itself; the
    record holds the results and summary tables."""

    kind = "lofit-compare"
    record_kind = "lofit_compare"
    Options = LofitCompareOptions

    def validate_options(self, o: LofitCompareOptions) -> None:
        from workbench.analyses.lofit import parse_part

        _check_task(o.task)
        if Path(o.out).exists() and not Path(o.out).is_dir():
            raise OptionError(f"--out {o.out} exists and is not a folder")
        for name in ("train", "val", "test", "retrieval_heads"):
            path = getattr(o, name)
            if path is not None and not Path(path).exists():
                raise OptionError(f"{flag(name)} {path} does not exist")
        for name in ("train_part", "val_part", "test_part"):
            parse_part(getattr(o, name))
        if not o.ks or not o.seeds:
            raise OptionError("--ks and --seeds each need at least one value")
        if min(o.ks) < 1:
            raise OptionError(f"--ks values must be at least 1, got {list(o.ks)}")
        _at_least_one(o, "train_limit", "val_limit", "test_limit", "select_steps", "train_steps", "eval_every",
                      "batch_size", "max_prompt", "max_target")  # fmt: skip
        from workbench.analyses.lofit.compare import check_resumable

        check_resumable(_comparison_plan(o), Path(o.out))  # before the model loads: a changed setting is refused

    def execute(self, ctx: Context, o: LofitCompareOptions, inputs) -> StepOutput:
        from workbench.analyses.lofit.compare import run_comparison, selection_overlap, summarise

        plan = _comparison_plan(o)
        model = ctx.model()
        shape = model.shape
        heads = shape.num_layers * shape.num_heads
        if max(o.ks) > heads:
            raise OptionError(f"--ks {max(o.ks)} is more heads than {model.name} has "
                              f"({shape.num_layers} layers x {shape.num_heads} heads = {heads})")  # fmt: skip
        frame = run_comparison(model, plan, Path(o.out), echo=ctx.echo)
        table = summarise(frame, o.task)
        summary = {"task": o.task, "out": str(o.out), "ks": list(o.ks), "seeds": list(o.seeds),
                   "conditions": _records(table), "overlap": selection_overlap(Path(o.out), plan)}  # fmt: skip
        return StepOutput(arrays={"results": frame, "summary": table}, summary=summary,
                          **_identity(o.train, o.to_dict()))  # fmt: skip


def _comparison_plan(o: LofitCompareOptions):
    from workbench.analyses.lofit import parse_part
    from workbench.analyses.lofit.compare import ComparisonPlan, Split

    return ComparisonPlan(
        task=o.task,
        train=Split(str(o.train), parse_part(o.train_part), o.train_limit),
        val=Split(str(o.val), parse_part(o.val_part), o.val_limit),
        test=Split(str(o.test), parse_part(o.test_part), o.test_limit),
        ks=tuple(o.ks), seeds=tuple(o.seeds), select_steps=o.select_steps, train_steps=o.train_steps,
        batch_size=o.batch_size, train_lr=o.lr, eval_every=o.eval_every, max_prompt=o.max_prompt,
        max_target=o.max_target, retrieval_heads=str(o.retrieval_heads) if o.retrieval_heads else None,
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class LofitFoldOptions(StepOptions):
    lofit: Path = help_field(help="LoFiT artifact folder (from `workbench lofit train`)", path=True)


class LofitFoldStep(Step):
    """The offsets folded into o_proj biases: a transformers model (``attention_bias=True``) that loads
    without the workbench. The record says which biases were folded; the front door saves the model
    (``artifacts["checkpoint"]``, with ``analyses.lofit.fold.save_checkpoint``).

    The checkpoint is an export of the command only (``workbench lofit fold``): in a pipeline the step
    records the biases and writes no files. The folded model is a whole copy of the weights, not in the
    record, and a pipeline writes its files from the record on every run, cached steps too; re-folding
    there would load the model and rewrite the checkpoint at every resume. The trained offsets are the
    pipeline's files (a lofit-train step's ``OUT/<step id>/``), and folding them is cheap and exact:
    ``workbench lofit fold MODEL --lofit OUT/<step id> --out DIR``."""

    kind = "lofit-fold"
    record_kind = "lofit_fold"
    Options = LofitFoldOptions

    def validate_options(self, o: LofitFoldOptions) -> None:
        if not Path(o.lofit).is_dir():
            raise OptionError(f"--lofit {o.lofit} is not a folder (a LoFiT artifact from `lofit train --out`)")

    def execute(self, ctx: Context, o: LofitFoldOptions, inputs) -> StepOutput:
        import hashlib

        import torch

        from workbench.analyses.lofit import LofitArtifact, folded_biases
        from workbench.analyses.lofit.fold import folded_checkpoint

        artifact = LofitArtifact.load(o.lofit)  # before the model loads: a broken artifact costs nothing
        model = ctx.model()
        biases = folded_biases(model, artifact)  # checks the artifact against the model's shape
        checkpoint = folded_checkpoint(model, artifact)
        offsets = artifact.offsets.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        params = {"lofit": str(o.lofit), "heads": [list(h) for h in artifact.heads], "task": artifact.task,
                  "offsets_sha256": hashlib.sha256(offsets).hexdigest()[:16]}  # fmt: skip
        summary = {**params, "trained_on": artifact.model,
                   "bias_norm": {str(layer): float(bias.norm()) for layer, bias in sorted(biases.items())}}  # fmt: skip
        return StepOutput(summary=summary, artifacts={"checkpoint": checkpoint, "artifact": artifact},
                          **_identity(o.lofit, params))  # fmt: skip

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        lofit = output.summary.get("lofit", "FOLDER")
        ctx.echo(f"  note: step {config['id']!r} (lofit-fold) writes no checkpoint in a pipeline; export it with "
                 f"`workbench lofit fold {ctx.pipeline.model} --lofit {lofit} --out DIR`")  # fmt: skip
        return []
