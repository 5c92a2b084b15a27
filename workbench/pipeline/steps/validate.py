"""``validate``: does intervening on the selected heads matter more than on as many random heads?

    - id: masking
      step: validate
      heads: candidates            # a select step
      data: paragraphs             # the prompts
      intervention: {mode: uniform, scope: both}   # uniform attention (query zeroed) or zero output
      metric: logprob              # mean next-token log-prob and top-1 accuracy (teacher forcing)
      controls: 2                  # random head sets of the same size (seeded)
      window: 256                  # first N tokens of each prompt

With ``metric: niah`` the prompts are needle-in-a-haystack runs instead of a data set (the held-out
needles of workbench.analyses.retrieval unless ``niah.needles`` is given)::

      metric: niah
      niah: {haystack: synthetic, lengths: [500], depths: [10, 60], max_new_tokens: 24}

Runs baseline, selected and control conditions as executor jobs (so ``--executor ray`` fans them out)
and records per-prompt metrics plus each condition's mean and its difference from the baseline.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.options import StepOptions, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput

MODES = ("uniform", "zero")
SCOPES = ("both", "prefill", "decode")
INTERVENTION = {"mode": MODES[0], "scope": SCOPES[0]}  # what an intervention's left-out keys are
METRICS = {"logprob": ("mean_logprob", "top1_accuracy"), "niah": ("success", "rouge_recall")}
NIAH_KEYS = {"haystack", "needles", "lengths", "depths", "max_new_tokens"}


@dataclass(frozen=True, kw_only=True)
class ValidateOptions(StepOptions):
    heads: str = help_field(help="the select step whose heads are intervened on")
    intervention: dict | None = help_field(None, "{mode: uniform|zero, scope: both|prefill|decode} (default uniform, both)")
    metric: str = help_field("logprob", f"one of {sorted(METRICS)}")
    controls: int = help_field(1, "number of random head sets of the same size")
    seed: int = help_field(0, "seed of the random head sets")
    window: int | None = help_field(None, "first N tokens of each prompt")
    shard_size: int = help_field(4, "prompts per shard")
    niah: dict | None = help_field(None, "metric niah: {haystack, needles, lengths, depths, max_new_tokens}")

    def intervention_spec(self) -> dict:
        return {**INTERVENTION, **(self.intervention or {})}


class ValidateStep(Step):
    kind = "validate"
    uses_data = True
    plumbing = True
    Options = ValidateOptions

    def wants_data(self, config: dict) -> bool:
        return config.get("metric", ValidateOptions.metric) != "niah"

    def validate(self, config: dict, pipeline) -> None:
        o = self.parse(config, pipeline)
        heads = o.heads
        if heads in pipeline.implementations and pipeline.step(heads)["step"] != "select":
            raise PipelineError(f"step {config['id']!r}: heads must name a select step, {heads!r} is not one")
        extra = sorted(set(o.intervention or {}) - set(INTERVENTION))
        if extra:
            raise PipelineError(f"step {config['id']!r}: intervention has unknown key(s) {extra}")
        intervention = o.intervention_spec()
        if intervention["mode"] not in MODES:
            raise PipelineError(f"step {config['id']!r}: intervention mode must be one of {MODES}")
        if intervention["scope"] not in SCOPES:
            raise PipelineError(f"step {config['id']!r}: intervention scope must be one of {SCOPES}")
        if o.metric not in METRICS:
            raise PipelineError(f"step {config['id']!r}: unknown metric {o.metric!r}; known: {sorted(METRICS)}")
        niah = o.niah or {}
        if sorted(set(niah) - NIAH_KEYS):
            raise PipelineError(
                f"step {config['id']!r}: niah has unknown key(s) {sorted(set(niah) - NIAH_KEYS)}"
            )
        if o.metric == "niah":
            from workbench.pipeline.registry import _module_exists

            if not _module_exists("workbench.analyses.retrieval.niah"):
                raise PipelineError(f"step {config['id']!r}: metric niah needs workbench.analyses.retrieval")
            for key in ("haystack", "needles"):
                value = niah.get(key)
                if value not in (None, "synthetic") and not (Path(pipeline.base) / value).exists():
                    raise PipelineError(f"step {config['id']!r}: niah.{key} {value!r} does not exist")
        for key in ("controls", "seed", "window", "shard_size"):
            value = getattr(o, key)
            if value is not None and value < (0 if key in ("controls", "seed") else 1):
                raise PipelineError(f"step {config['id']!r}: {key} is out of range: {value}")

    def input_files(self, config: dict, pipeline) -> dict[str, list[str]]:
        """``niah: {haystack, needles}``: files, resolved as ``niah_prompts`` resolves them."""
        o = self.parse(config, pipeline)
        if o.metric != "niah":
            return {}
        niah = o.niah or {}
        return {f"niah.{key}": [str(Path(pipeline.base) / niah[key])] for key in ("haystack", "needles")
                if isinstance(niah.get(key), str) and niah[key] != "synthetic"}  # fmt: skip

    def inputs(self, config: dict) -> list[str]:
        return [config["heads"]]

    def conditions(self, o: ValidateOptions, selection: StepOutput) -> dict[str, list[tuple[int, int]]]:
        """Condition name -> heads to intervene on: baseline (none), selected, control-0, control-1, ..."""
        selected = [tuple(pair) for pair in selection.summary["heads"]]
        others = [
            tuple(pair)
            for pair in selection.summary["universe"]
            if list(pair) not in selection.summary["heads"]
        ]
        out = {"baseline": [], "selected": selected}
        for index in range(o.controls):
            rng = random.Random(o.seed * 1000 + index)
            out[f"control-{index}"] = sorted(rng.sample(others, min(len(selected), len(others))))
        return out

    def run(self, ctx: Context, config: dict, inputs: dict[str, StepOutput]) -> StepOutput:
        from workbench.exec import JobSpec, make_shards, run_jobs
        from workbench.seam.interventions import mask_heads

        o = self.parse(config, ctx.pipeline)
        selection = inputs[o.heads]
        if not selection.summary["heads"]:
            ctx.echo(f"  step {config['id']!r}: the selection is empty, nothing to validate")
            return StepOutput(summary={"skipped": "the selection is empty"})
        intervention = o.intervention_spec()
        metric = o.metric
        params = {"window": o.window} if o.window else {}
        if metric == "niah":
            prompts, params = niah_prompts(ctx.pipeline.base, o.niah or {})
        else:
            prompts = ctx.texts(config.get("data", "default"))
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
            for name, heads in self.conditions(o, selection).items()
        ]
        table = run_jobs(ctx.executor, jobs, make_shards(prompts, o.shard_size))
        table = table.drop(columns="model")
        return StepOutput(
            arrays={"per_prompt": table}, summary=summarize(table, METRICS[metric], len(prompts))
        )

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.pipeline.report import validation_figure

        if "per_prompt" not in output.arrays:
            return []
        metric = METRICS[config.get("metric", ValidateOptions.metric)][0]
        return [validation_figure(output.table("per_prompt"), metric, config["id"])]


def niah_prompts(base: Path, options: dict) -> tuple[list[str], dict]:
    """The NIAH grid (needles x lengths x depths) as JSON prompts, and the task's parameters."""
    from workbench.analyses.retrieval.niah import resolve_inputs
    from workbench.pipeline.options import defaults
    from workbench.pipeline.steps.retrieval import NiahOptions

    default = defaults(NiahOptions)
    haystack = options.get("haystack", default["haystack"])
    haystack = haystack if haystack == "synthetic" else str(Path(base) / haystack)
    needles = options.get("needles")
    _, needle_list = resolve_inputs(haystack, Path(base) / needles if needles else None, "heldout")
    prompts = [
        json.dumps({**needle.to_dict(), "length": int(length), "depth": float(depth)}, sort_keys=True)
        for needle in needle_list
        for length in options.get("lengths", [500])
        for depth in options.get("depths", [10, 60])
    ]
    return prompts, {"haystack": haystack, "max_new_tokens": int(options.get("max_new_tokens", default["max_new_tokens"]))}


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
