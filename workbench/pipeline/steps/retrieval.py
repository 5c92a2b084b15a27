"""``retrieval``: retrieval-head scores (Wu et al. 2024) from needle-in-a-haystack runs.

    - id: retrieval
      step: retrieval
      haystack: synthetic        # or a .txt file / folder of .txt files (relative to the pipeline file)
      needles: null              # JSONL of {needle, question, answer}; default: built-in / pass keys
      lengths: [300]             # context lengths in tokens
      depths: [0, 50, 100]       # needle depths in %
      threshold: 0.1             # a retrieval head scores above this
      max_new_tokens: 24

Head table: ``score`` (mean hit rate over successful runs), ``active_runs``, ``retrieval_head``.
"""

from __future__ import annotations

from pathlib import Path

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.steps.base import Context, Step, StepOutput, option, write_parquet


def _numbers(config: dict, key: str, default: list, low: float, high: float) -> list:
    values = config.get(key, default)
    if (
        not isinstance(values, list)
        or not values
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high for v in values
        )
    ):
        raise PipelineError(f"step {config['id']!r}: {key} must be a list of numbers in [{low}, {high}]")
    return values


class RetrievalStep(Step):
    kind = "retrieval"
    options = {
        "haystack": "synthetic (default), a .txt file or a folder of .txt files",
        "needles": "JSONL of {needle, question, answer} (default: built-in)",
        "lengths": "context lengths in tokens (default [500, 1000])",
        "depths": "needle depths in % (default [0, 50, 100])",
        "threshold": "retrieval-head threshold (default 0.1)",
        "max_new_tokens": "answer length limit (default 50)",
    }

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "kv_head", "score", "active_runs", "retrieval_head"}

    def validate(self, config: dict, pipeline) -> None:
        _numbers(config, "lengths", [500, 1000], 32, 10**7)
        _numbers(config, "depths", [0, 50, 100], 0, 100)
        option(config, "threshold", (int, float), "a number", 0.1)
        option(config, "max_new_tokens", int, "a number of tokens", 50)
        for key in ("haystack", "needles"):
            value = option(config, key, str, "a path")
            if value is not None and value != "synthetic" and not (self._path(pipeline, value)).exists():
                raise PipelineError(f"step {config['id']!r}: {key} {value!r} does not exist")

    @staticmethod
    def _path(pipeline, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else Path(pipeline.base) / path

    def run(self, ctx: Context, config: dict, inputs) -> StepOutput:
        from workbench.analyses.retrieval.niah import detect_retrieval_heads, niah_summary

        haystack = config.get("haystack", "synthetic")
        needles = config.get("needles")
        table, runs = detect_retrieval_heads(
            ctx.model(),
            haystack if haystack == "synthetic" else self._path(ctx.pipeline, haystack),
            self._path(ctx.pipeline, needles) if needles else None,
            tuple(config.get("lengths", [500, 1000])),
            tuple(config.get("depths", [0, 50, 100])),
            threshold=float(config.get("threshold", 0.1)),
            max_new_tokens=int(config.get("max_new_tokens", 50)),
            return_runs=True,
            units=ctx.units(config),  # each NIAH run is kept as it finishes: a rerun continues
        )
        table["retrieval_head"] = table["retrieval_head"].astype(int)
        summary = {
            **niah_summary(runs),
            "retrieval_heads": int(table["retrieval_head"].sum()),
            "successful_runs": table.attrs["params"]["successful_runs"],
            "top": [
                [int(r.layer), int(r.head), round(float(r.score), 4)] for r in table.head(10).itertuples()
            ],
        }
        return StepOutput(head_tables={"heads": table}, arrays={"runs": runs}, summary=summary)

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.plots import head_heatmap

        return [head_heatmap(output.table("heads"), "score", title=f"{config['id']}: retrieval score")]
