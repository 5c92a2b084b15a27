"""``lofit``: LoFiT step 1 (Yin, Ye, Durrett 2024): learn a scale per head's output with an L1 penalty
on a task, rank heads by the scale's norm (workbench.analyses.lofit).

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

from pathlib import Path

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.steps.base import Context, Step, StepOutput, option, write_parquet

TASKS = ("truthfulqa", "clutrr")


class LofitStep(Step):
    kind = "lofit"
    options = {
        "task": f"one of {TASKS}",
        "file": "task file (default: the shipped sample)",
        "limit": "first N items",
        "steps": "optimiser steps",
        "epochs": "epochs (default 5)",
        "seed": "seed of the scale initialisation",
    }

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "kv_head", "score", "rank"}

    def validate(self, config: dict, pipeline) -> None:
        if option(config, "task", str, f"one of {TASKS}", "truthfulqa") not in TASKS:
            raise PipelineError(f"step {config['id']!r}: task must be one of {TASKS}")
        path = option(config, "file", str, "a path")
        if path is not None and not (Path(pipeline.base) / path).exists():
            raise PipelineError(f"step {config['id']!r}: task file {path!r} does not exist")
        for key in ("limit", "steps", "epochs"):
            value = option(config, key, int, "a positive integer")
            if value is not None and value < 1:
                raise PipelineError(f"step {config['id']!r}: {key} must be >= 1")
        option(config, "seed", int, "an integer")

    def run(self, ctx: Context, config: dict, inputs) -> StepOutput:
        from workbench.analyses import lofit

        task = config.get("task", "truthfulqa")
        path = Path(ctx.pipeline.base) / config["file"] if config.get("file") else lofit.sample_path(task)
        items = lofit.load_task(task, path, limit=config.get("limit"))
        overrides = {k: config.get(k) for k in ("steps", "epochs", "seed")}
        train = lofit.TrainConfig.defaults(task, 1, **overrides)
        table, _, log = lofit.select_heads(
            ctx.model(), items, train, progress=True, checkpoint=ctx.training_checkpoint(config)
        )
        table.attrs.pop("params", None)
        summary = {
            "task": task,
            "items": len(items),
            "top": [
                [int(r.layer), int(r.head), round(float(r.score), 5)] for r in table.head(10).itertuples()
            ],
        }
        if isinstance(log, dict):
            summary["log"] = {k: v for k, v in log.items() if isinstance(v, (int, float, str))}
        return StepOutput(head_tables={"heads": table}, summary=summary)

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.plots import head_heatmap

        return [
            head_heatmap(output.table("heads"), "score", title=f"{config['id']}: ||A|| of the learned scale")
        ]
