"""``sinks``: attention-sink scores per head (first-token mass, Sink_k; workbench.analyses.sinks).

    - id: sinks
      step: sinks
      data: corpus         # the texts are joined and cut into windows
      window: 64           # tokens per window
      eps: 0.3             # a head is a sink head in a window when its first-token mass exceeds eps
      max_windows: 8

Head table: ``score`` = mean first-token mass, ``sink_fraction`` = share of windows above eps.
"""

from __future__ import annotations

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.steps.base import Context, Step, StepOutput, option, write_parquet


class SinksStep(Step):
    kind = "sinks"
    uses_data = True
    options = {
        "window": "tokens per window (default 64)",
        "eps": "sink threshold on first-token mass (default 0.3)",
        "max_windows": "use at most this many windows",
    }

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "kv_head", "score", "sink_fraction"}

    def validate(self, config: dict, pipeline) -> None:
        window = option(config, "window", int, "a number of tokens", 64)
        eps = option(config, "eps", (int, float), "a number in (0, 1)", 0.3)
        limit = option(config, "max_windows", int, "a number of windows")
        if window < 2 or not 0 < eps < 1 or (limit is not None and limit < 1):
            raise PipelineError(f"step {config['id']!r}: window >= 2, 0 < eps < 1 and max_windows >= 1")

    def run(self, ctx: Context, config: dict, inputs) -> StepOutput:
        from workbench.analyses.sinks import sinks_report

        text = "\n\n".join(ctx.texts(config.get("data", "default")))
        report, tables = sinks_report(
            ctx.model(),
            text,
            window=int(config.get("window", 64)),
            eps=float(config.get("eps", 0.3)),
            max_windows=config.get("max_windows"),
        )
        summary = {
            "sink_1": report["sink_1"],
            "sink_k": report["sink_k"][:8],
            "sink_1_per_layer": report["sink_1_per_layer"],
            "hidden_sink_positions": report["hidden_sinks"]["positions_flagged"],
            "sink_dims": report["massive_dims"]["sink_dims"],
            "windows": report["params"]["windows"],
        }
        return StepOutput(
            head_tables={"heads": tables["heads"]}, arrays={"sink_k": tables["sink_k"]}, summary=summary
        )

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        import plotly.graph_objects as go

        from workbench.plots import head_heatmap

        rates = output.table("sink_k")
        line = go.Figure(go.Scatter(x=rates["k"], y=rates["sink"], mode="lines+markers"))
        line.update_layout(title=f"{config['id']}: Sink_k (share of heads whose k-th key is a sink)",
                           xaxis_title="k", yaxis_title="Sink_k")  # fmt: skip
        return [head_heatmap(output.table("heads"), "score", title=f"{config['id']}: first-token mass"), line]
