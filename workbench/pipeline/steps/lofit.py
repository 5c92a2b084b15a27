"""LoFiT Steps (Yin, Ye, Durrett 2024; workbench.analyses.lofit): ``lofit`` (step 1: learn a scale per
head's output with an L1 penalty, rank heads by the scale's norm), ``lofit-train`` (step 2: learn offsets
for chosen heads) and ``lofit-eval`` (MC1/MC2 or accuracy, with or without offsets). ``workbench lofit
select|train|eval`` run them; training knobs left out keep ``TrainConfig``'s defaults for the task.

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

from workbench.pipeline.options import OptionError, StepOptions, help_field
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
        from workbench.analyses.lofit.data import TASKS as KNOWN

        if self.task not in KNOWN:
            raise OptionError(f"unknown --task {self.task!r}; choose one of {', '.join(KNOWN)}")
        if self.limit is not None and self.limit < 1:
            raise OptionError(f"--limit must be at least 1, got {self.limit}")
        parse_part(self.part)

    def items(self, file=None, part=None, limit=None, *, default: bool = True):
        """(path, items) of the task file (``file``/``part``/``limit`` override the options')."""
        from workbench.analyses.lofit import load_task, parse_part, sample_path

        file, part, limit = (file, part, limit) if not default else (self.file, self.part, self.limit)
        path = file if file is not None else sample_path(self.task)
        return path, load_task(self.task, path, parse_part(part), limit)


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
        return StepOutput(summary={"heads": artifact.heads, "final_loss": log["loss"][-1]},
                          artifacts={"artifact": artifact, "log": log}, **_identity(path, artifact.params))  # fmt: skip


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
