"""``validate``: does intervening on the selected heads matter more than on as many random heads?

    - id: masking
      step: validate
      heads: candidates            # a select step
      data: paragraphs             # the prompts
      intervention: {mode: uniform, scope: both}   # uniform attention (query zeroed) or zero output
      metric: logprob              # mean next-token log-prob and top-1 accuracy (teacher forcing)
      controls: 2                  # random head sets of the same size (seeded)
      window: 256                  # first N tokens of each prompt

Runs baseline, selected and control conditions as executor jobs (so ``--executor ray`` fans them out)
and records per-prompt metrics plus each condition's mean and its difference from the baseline.
"""

from __future__ import annotations

import random

import pandas as pd

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.steps.base import Context, Step, StepOutput, option, require

MODES = ("uniform", "zero")
SCOPES = ("both", "prefill", "decode")
METRICS = {"logprob": ("mean_logprob", "top1_accuracy")}


class ValidateStep(Step):
    kind = "validate"
    uses_data = True
    options = {
        "heads": "the select step whose heads are intervened on",
        "intervention": "{mode: uniform|zero, scope: both|prefill|decode}",
        "metric": f"one of {sorted(METRICS)}",
        "controls": "number of random head sets of the same size (default 1)",
        "seed": "seed of the random head sets (default 0)",
        "window": "first N tokens of each prompt",
        "shard_size": "prompts per shard (default 4)",
    }

    def validate(self, config: dict, pipeline) -> None:
        heads = require(config, "heads", str, "the id of a select step")
        if heads in pipeline.implementations and pipeline.step(heads)["step"] != "select":
            raise PipelineError(f"step {config['id']!r}: heads must name a select step, {heads!r} is not one")
        intervention = option(config, "intervention", dict, "a mapping with mode and scope", {})
        extra = sorted(set(intervention) - {"mode", "scope"})
        if extra:
            raise PipelineError(f"step {config['id']!r}: intervention has unknown key(s) {extra}")
        if intervention.get("mode", "uniform") not in MODES:
            raise PipelineError(f"step {config['id']!r}: intervention mode must be one of {MODES}")
        if intervention.get("scope", "both") not in SCOPES:
            raise PipelineError(f"step {config['id']!r}: intervention scope must be one of {SCOPES}")
        metric = option(config, "metric", str, f"one of {sorted(METRICS)}", "logprob")
        if metric not in METRICS:
            raise PipelineError(f"step {config['id']!r}: unknown metric {metric!r}; known: {sorted(METRICS)}")
        for key in ("controls", "seed", "window", "shard_size"):
            value = option(config, key, int, "an integer")
            if value is not None and value < (0 if key in ("controls", "seed") else 1):
                raise PipelineError(f"step {config['id']!r}: {key} is out of range: {value}")

    def inputs(self, config: dict) -> list[str]:
        return [config["heads"]]

    def conditions(self, config: dict, selection: StepOutput) -> dict[str, list[tuple[int, int]]]:
        """Condition name -> heads to intervene on: baseline (none), selected, control-0, control-1, ..."""
        selected = [tuple(pair) for pair in selection.summary["heads"]]
        others = [
            tuple(pair)
            for pair in selection.summary["universe"]
            if list(pair) not in selection.summary["heads"]
        ]
        out = {"baseline": [], "selected": selected}
        for index in range(int(config.get("controls", 1))):
            rng = random.Random(int(config.get("seed", 0)) * 1000 + index)
            out[f"control-{index}"] = sorted(rng.sample(others, min(len(selected), len(others))))
        return out

    def run(self, ctx: Context, config: dict, inputs: dict[str, StepOutput]) -> StepOutput:
        from workbench.exec import JobSpec, make_shards, run_jobs
        from workbench.seam.interventions import mask_heads

        selection = inputs[config["heads"]]
        if not selection.summary["heads"]:
            ctx.echo(f"  step {config['id']!r}: the selection is empty, nothing to validate")
            return StepOutput(summary={"skipped": "the selection is empty"})
        intervention = {"mode": "uniform", "scope": "both", **config.get("intervention", {})}
        metric = config.get("metric", "logprob")
        params = {"window": int(config["window"])} if config.get("window") else {}
        jobs = [
            JobSpec(
                task=metric,
                model=ctx.pipeline.model,
                dtype=ctx.pipeline.dtype,
                interventions=[
                    i.to_dict() for i in mask_heads(heads, intervention["mode"], intervention["scope"])
                ],
                params=params,
                label=name,
            )
            for name, heads in self.conditions(config, selection).items()
        ]
        prompts = ctx.texts(config.get("data", "default"))
        table = run_jobs(ctx.executor, jobs, make_shards(prompts, int(config.get("shard_size", 4))))
        table = table.drop(columns="model")
        return StepOutput(
            arrays={"per_prompt": table}, summary=summarize(table, METRICS[metric], len(prompts))
        )

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.pipeline.report import validation_figure

        if "per_prompt" not in output.arrays:
            return []
        metric = METRICS[config.get("metric", "logprob")][0]
        return [validation_figure(output.table("per_prompt"), metric, config["id"])]


def summarize(table: pd.DataFrame, metrics: tuple[str, ...], prompts: int) -> dict:
    """Mean of each metric per condition, and each condition's mean paired difference from baseline."""
    means = table.groupby("label", sort=False)[list(metrics)].mean()
    baseline = table[table["label"] == "baseline"].set_index("prompt")
    summary: dict = {"prompts": prompts, "conditions": {}}
    for label, row in means.iterrows():
        entry = {metric: float(row[metric]) for metric in metrics}
        if label != "baseline":
            paired = table[table["label"] == label].set_index("prompt")
            for metric in metrics:
                entry[f"delta_{metric}"] = float((paired[metric] - baseline[metric]).mean())
        summary["conditions"][label] = entry
    controls = [v for k, v in summary["conditions"].items() if k.startswith("control-")]
    if controls and "selected" in summary["conditions"]:
        first = metrics[0]
        control_mean = sum(c[f"delta_{first}"] for c in controls) / len(controls)
        summary[f"selected_minus_control_delta_{first}"] = (
            summary["conditions"]["selected"][f"delta_{first}"] - control_mean
        )
    return summary
