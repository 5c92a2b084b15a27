"""``capture``: attention statistics over a data set -> one head table (mean over texts).

    - id: capture
      step: capture
      data: corpus                 # a data set name (default: default)
      statistics: [sink_mass, local_mass, mean_distance, entropy]
      key_statistics: [received]
      pooled_cells: 128            # pooled map kept with each recorded capture (for the app)
      window: 512                  # first N tokens of each text
      score: sink_mass             # the head table's score column
      classify: true               # add the demo's label column (sink / local / long-range / mixed)
      save_captures: true          # record each text's full capture in the store too
      spec: {local_window: 16}     # any other CaptureSpec field

All options are optional; ``statistics`` defaults to the standard row statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.options import OptionError, StepOptions, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput, option, write_parquet
from workbench.seam.spec import DEFAULT_ROW_STATISTICS, CaptureSpec, SpecError

CLASSIFY_NEEDS = ("sink_mass", "local_mass", "mean_distance")
PLOTTED = ("sink_mass", "local_mass", "mean_distance", "entropy", "waad", "max")


class CaptureStep(Step):
    kind = "capture"
    uses_data = True
    options = {
        "statistics": "row statistics to average per head",
        "key_statistics": "key statistics (received, fai)",
        "pooled_cells": "side of the pooled map kept with the capture (0 = none)",
        "window": "first N tokens of each text",
        "score": "the column used as the head table's score",
        "classify": "add a sink/local/long-range/mixed label per head",
        "save_captures": "record each text's full capture in the store (default true)",
        "shard_size": "texts per shard (default 1)",
        "spec": "other CaptureSpec fields",
    }

    def capture_spec(self, config: dict) -> CaptureSpec:
        statistics = config.get("statistics", [s for s in DEFAULT_ROW_STATISTICS if s != "argmax"])
        extra = option(config, "spec", dict, "a mapping of CaptureSpec fields", {})
        try:
            return CaptureSpec.from_dict(
                {
                    **extra,
                    "statistics": list(statistics),
                    "key_statistics": list(config.get("key_statistics", [])),
                    "pooled_cells": option(config, "pooled_cells", int, "an integer in [0, 256]", 0),
                }
            )
        except SpecError as error:
            raise PipelineError(f"step {config['id']!r}: {error}") from None

    def columns(self, config: dict) -> set[str]:
        names = {"layer", "head", "kv_head", "tokens", "score", *self.capture_spec(config).statistics}
        return names | ({"label"} if config.get("classify") else set())

    def validate(self, config: dict, pipeline) -> None:
        for key in ("statistics", "key_statistics"):
            value = config.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PipelineError(f"step {config['id']!r}: {key} must be a list of names")
        spec = self.capture_spec(config)
        if not spec.statistics:
            raise PipelineError(f"step {config['id']!r}: give at least one row statistic")
        option(config, "window", int, "a number of tokens")
        option(config, "shard_size", int, "a number of texts")
        option(config, "classify", bool, "true or false")
        option(config, "save_captures", bool, "true or false")
        score = option(config, "score", str, "a statistic name", self.default_score(spec))
        if score not in spec.statistics or score == "argmax":
            raise PipelineError(f"step {config['id']!r}: score {score!r} is not one of its statistics")
        if config.get("classify"):
            missing = [s for s in CLASSIFY_NEEDS if s not in spec.statistics]
            if missing:
                raise PipelineError(f"step {config['id']!r}: classify needs the statistics {missing}")

    @staticmethod
    def default_score(spec: CaptureSpec) -> str:
        return "sink_mass" if "sink_mass" in spec.statistics else spec.statistics[0]

    def run(self, ctx: Context, config: dict, inputs) -> StepOutput:
        from workbench.analyses.heads import make_head_table
        from workbench.exec import JobSpec, make_shards, run_jobs

        spec = self.capture_spec(config)
        texts = ctx.texts(config.get("data", "default"))
        params = {"save_captures": bool(config.get("save_captures", True))}
        if config.get("window"):
            params["window"] = int(config["window"])
        job = JobSpec(
            task="capture",
            model=ctx.pipeline.model,
            dtype=ctx.pipeline.dtype,
            capture=spec.to_dict(),
            params=params,
            label=config["id"],
        )
        per_text = run_jobs(ctx.executor, [job], make_shards(texts, int(config.get("shard_size", 1))))
        per_text = per_text.drop(columns=["label", "model"])
        numeric = ["tokens", *(s for s in spec.statistics if s != "argmax")]
        means = per_text.groupby(["layer", "head", "kv_head"], as_index=False)[numeric].mean()
        score = config.get("score", self.default_score(spec))
        table = make_head_table(means.to_dict(orient="records"), "capture", spec.to_dict(), score=score)
        if config.get("classify"):
            from workbench.analyses.demo import classify_heads

            labels = classify_heads(table)
            table["label"] = [labels[(r.layer, r.head)] for r in table.itertuples()]
        summary = {"texts": len(texts), "tokens": int(per_text.groupby("prompt")["tokens"].first().sum())}
        if "label" in table:
            summary["head_counts"] = {
                k: int(v) for k, v in table["label"].value_counts().sort_index().items()
            }
        for column in ("sink_mass", "mean_distance"):
            if column in table:
                top = table.nlargest(5, column)
                summary[f"top_{column}"] = [
                    [int(r.layer), int(r.head), round(float(getattr(r, column)), 4)] for r in top.itertuples()
                ]
        return StepOutput(head_tables={"heads": table}, arrays={"per_text": per_text}, summary=summary)

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.plots import head_heatmap

        table = output.table("heads")
        return [
            head_heatmap(table, column, title=f"{config['id']}: {column}")
            for column in PLOTTED
            if column in table
        ]


@dataclass(frozen=True, kw_only=True)
class CaptureTextOptions(StepOptions):
    text: Path = help_field(help="UTF-8 text file; tokenised with no BOS or chat template", path=True)
    window: int | None = help_field(None, "keep only the first N tokens")
    layers: tuple[int, ...] | None = help_field(None, "comma-separated layers (default all)")
    heads: tuple[int, ...] | None = help_field(None, "comma-separated query heads (default all)")
    spec: str | None = help_field(None, "a capture spec as JSON (overrides --layers/--heads)")
    pooled: int = help_field(128, "side of the stored pooled attention map (0 = none; one text only, not a folder)")

    def capture_spec(self, folder: bool = False) -> CaptureSpec:
        if self.spec:
            return CaptureSpec.from_json(self.spec)
        return CaptureSpec(layers=self.layers, heads=self.heads, key_statistics=("received",),
                           pooled_cells=0 if folder else self.pooled)  # fmt: skip


class CaptureTextStep(Step):
    """One text's full capture (head table, per-token statistics, pooled map): ``workbench capture``."""

    kind = "capture-text"
    record_kind = "capture"
    Options = CaptureTextOptions

    def validate_options(self, o: CaptureTextOptions) -> None:
        o.capture_spec()  # a bad --spec fails here
        if o.window is not None and o.window < 2:
            raise OptionError("--window must be at least 2 tokens")

    def execute(self, ctx: Context, o: CaptureTextOptions, inputs) -> StepOutput:
        from workbench.store.captures import capture_record
        from workbench.texts import read_text

        spec = o.capture_spec()
        content = read_text(o.text)
        model = ctx.model()
        spec.validate_for(model.shape.num_layers, model.shape.num_heads)
        ids = model.encode(content, window=o.window)
        ctx.echo(f"{model}: {ids.shape[-1]} tokens")
        _, result = model.run(ids, spec, progress=ctx.pipeline is None, all_logits=False)  # the table needs no logits
        record = capture_record(result, input_ids=ids, params={"window": o.window})
        record.artifacts = {"table": record.table("heads"), "capture": result}
        return record
