"""``rhythm``: preplan/anchor rhythm head groups (mean backward distance while answering problems).

    - id: rhythm
      step: rhythm
      problems: null          # JSONL of {question, answer}; default: the bundled arithmetic problems
      limit: 4
      max_new_tokens: 64
      layers: null            # default: the middle third

Head table (the analysed layers): ``score`` = mean backward distance, ``local_fraction``,
``global_fraction``, ``group`` (local / global / middle).
"""

from __future__ import annotations

from pathlib import Path

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.steps.base import Context, Step, StepOutput, option, write_parquet


class RhythmStep(Step):
    kind = "rhythm"
    options = {
        "problems": "JSONL of problems (default: bundled arithmetic problems)",
        "limit": "first N problems",
        "max_new_tokens": "response length limit (default 128)",
        "layers": "layers to analyse (default: the middle third)",
    }

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "score", "mean_distance", "local_fraction", "global_fraction", "group"}

    def validate(self, config: dict, pipeline) -> None:
        problems = option(config, "problems", str, "a path")
        if problems is not None and not self._path(pipeline, problems).exists():
            raise PipelineError(f"step {config['id']!r}: problems file {problems!r} does not exist")
        for key in ("limit", "max_new_tokens"):
            value = option(config, key, int, "a positive integer")
            if value is not None and value < 1:
                raise PipelineError(f"step {config['id']!r}: {key} must be >= 1")
        layers = config.get("layers")
        if layers is not None and not (isinstance(layers, list) and all(isinstance(v, int) for v in layers)):
            raise PipelineError(f"step {config['id']!r}: layers must be a list of layer indices")

    @staticmethod
    def _path(pipeline, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else Path(pipeline.base) / path

    def run(self, ctx: Context, config: dict, inputs) -> StepOutput:
        from workbench.analyses.rhythm import RhythmParams, load_problems, run_rhythm
        from workbench.analyses.rhythm.pipeline import default_layers
        from workbench.analyses.rhythm.summary import head_group_table, token_table

        problems_path = config.get("problems")
        problems = load_problems(
            self._path(ctx.pipeline, problems_path) if problems_path else None, config.get("limit")
        )
        model, params = ctx.model(), RhythmParams()
        layers = config.get("layers")
        responses, _ = run_rhythm(
            model, problems, max_new_tokens=int(config.get("max_new_tokens", 128)), params=params,
            layers=tuple(layers) if layers else None, progress=True,
        )  # fmt: skip
        if not responses:
            raise PipelineError(
                f"step {config['id']!r}: no response of 2 or more tokens; raise max_new_tokens"
            )
        used = tuple(layers) if layers else tuple(default_layers(model))
        table = head_group_table(responses, used, params)
        tokens = token_table(responses)
        summary = {
            "responses": len(responses),
            "layers": list(used),
            "groups": {k: int(v) for k, v in table["group"].value_counts().sort_index().items()},
        }
        return StepOutput(head_tables={"heads": table}, arrays={"tokens": tokens}, summary=summary)

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.plots import head_heatmap

        return [
            head_heatmap(
                output.table("heads"), "mean_distance", title=f"{config['id']}: mean backward distance"
            )
        ]
