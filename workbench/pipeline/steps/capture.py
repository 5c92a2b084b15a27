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

from workbench.pipeline.options import OptionError, StepOptions, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput, write_parquet
from workbench.seam.spec import DEFAULT_ROW_STATISTICS, CaptureSpec, SpecError

CLASSIFY_NEEDS = ("sink_mass", "local_mass", "mean_distance")
PLOTTED = ("sink_mass", "local_mass", "mean_distance", "entropy", "waad", "max")
STATISTICS = tuple(s for s in DEFAULT_ROW_STATISTICS if s != "argmax")


@dataclass(frozen=True, kw_only=True)
class CaptureOptions(StepOptions):
    statistics: tuple[str, ...] = help_field(STATISTICS, "row statistics to average per head")
    key_statistics: tuple[str, ...] = help_field((), "key statistics (received, fai)")
    pooled_cells: int = help_field(0, "side of the pooled map kept with the capture (0 = none)")
    window: int | None = help_field(None, "first N tokens of each text")
    score: str | None = help_field(None, "the column used as the head table's score (default sink_mass, else the first)")
    classify: bool = help_field(False, "add a sink/local/long-range/mixed label per head")
    save_captures: bool = help_field(True, "record each text's full capture in the store")
    shard_size: int = help_field(1, "texts per shard")
    spec: dict | None = help_field(None, "other CaptureSpec fields")

    def capture_spec(self) -> CaptureSpec:
        fields = {**(self.spec or {}), "statistics": list(self.statistics), "key_statistics": list(self.key_statistics),
                  "pooled_cells": self.pooled_cells}  # fmt: skip
        try:
            return CaptureSpec.from_dict(fields)
        except SpecError as error:
            raise OptionError(str(error)) from None

    def score_column(self) -> str:
        spec = self.capture_spec()
        return self.score or ("sink_mass" if "sink_mass" in spec.statistics else spec.statistics[0])


class CaptureStep(Step):
    kind = "capture"
    record_kind = "capture-texts"
    uses_data = True
    Options = CaptureOptions

    def columns(self, config: dict) -> set[str]:
        from workbench.pipeline.options import from_config

        options = from_config(CaptureOptions, config, where=f"step {config['id']!r}")
        names = {"layer", "head", "kv_head", "tokens", "score", *options.capture_spec().statistics}
        return names | ({"label"} if options.classify else set())

    def validate_options(self, o: CaptureOptions) -> None:
        spec = o.capture_spec()
        if not spec.statistics:
            raise OptionError("give at least one row statistic")
        score = o.score_column()
        if score not in spec.statistics or score == "argmax":
            raise OptionError(f"score {score!r} is not one of its statistics")
        if o.classify:
            missing = [s for s in CLASSIFY_NEEDS if s not in spec.statistics]
            if missing:
                raise OptionError(f"classify needs the statistics {missing}")
        if o.shard_size < 1:
            raise OptionError(f"shard_size must be at least 1, got {o.shard_size}")

    def execute(self, ctx: Context, o: CaptureOptions, inputs) -> StepOutput:
        from workbench.analyses.heads import make_head_table
        from workbench.exec import JobSpec, LocalExecutor, make_shards, run_jobs

        spec = o.capture_spec()
        texts = ctx.step_texts()
        params = {"save_captures": o.save_captures}
        if o.window:
            params["window"] = int(o.window)
        executor = ctx.executor
        if executor is None:  # run on its own: this process's model
            executor = LocalExecutor(ctx.store, device=ctx.where.device, progress=False)
            executor.adopt(ctx.model(), o.dtype if o.dtype != "auto" else None)
        dtype = ctx.pipeline.dtype if ctx.pipeline is not None else (o.dtype if o.dtype != "auto" else None)
        job = JobSpec(task="capture", model=ctx.model().name if ctx.pipeline is None else o.model, dtype=dtype,
                      capture=spec.to_dict(), params=params, label=ctx.config["id"] if ctx.config else "capture")  # fmt: skip
        per_text = run_jobs(executor, [job], make_shards(texts, o.shard_size))
        per_text = per_text.drop(columns=["label", "model"])
        numeric = ["tokens", *(s for s in spec.statistics if s != "argmax")]
        means = per_text.groupby(["layer", "head", "kv_head"], as_index=False)[numeric].mean()
        table = make_head_table(means.to_dict(orient="records"), "capture", spec.to_dict(), score=o.score_column())
        if o.classify:
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
        from workbench.pipeline.data import texts_hash

        return StepOutput(head_tables={"heads": table}, arrays={"per_text": per_text}, summary=summary,
                          input_hash=texts_hash(texts), params=o.to_dict())  # fmt: skip

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
        from workbench.texts import read_text

        spec = o.capture_spec()
        content = read_text(o.text)
        model = ctx.model()
        spec.validate_for(model.shape.num_layers, model.shape.num_heads)
        ids = model.encode(content, window=o.window)
        ctx.echo(f"{model}: {ids.shape[-1]} tokens")
        result, record = capture_ids(model, ids, spec, params={"window": o.window},
                                     progress=ctx.pipeline is None, all_logits=False)  # the table needs no logits
        record.artifacts = {"table": record.table("heads"), "capture": result}
        return record


def capture_ids(model, ids, spec: CaptureSpec, *, interventions=(), params: dict | None = None, **run_options):
    """One text's capture and its run record (kind ``capture``): what ``workbench capture`` records and
    what the capture Step's shards record with ``save_captures`` (the ``capture`` executor task).
    ``run_options`` go to ``model.run`` (an HF model's ``progress``, ``all_logits``)."""
    from workbench.store.captures import capture_record

    _, result = model.run(ids, spec, interventions, **run_options)
    return result, capture_record(result, input_ids=ids, params=params)
