"""``sinks``: attention-sink scores per head (first-token mass, Sink_k; workbench.analyses.sinks).

    - id: sinks
      step: sinks
      data: corpus         # the texts are joined and cut into windows
      window: 64           # tokens per window
      eps: 0.3             # a head is a sink head in a window when its first-token mass exceeds eps
      max_windows: 8

Head table: ``score`` = mean first-token mass, ``sink_fraction`` = share of windows above eps.
``workbench heads sinks`` runs the same Step on one text file (``text``) and writes its report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.pipeline.options import OptionError, StepOptions, flag, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput, write_parquet


@dataclass(frozen=True, kw_only=True)
class SinksOptions(StepOptions):
    text: Path | None = help_field(None, "UTF-8 text file cut into windows (a pipeline: its data set)", path=True)
    window: int = help_field(64, "tokens per window (a last short window is dropped)")
    eps: float = help_field(0.3, "Sink_k threshold on a key's column mean")
    max_windows: int | None = help_field(None, "use at most this many windows")


class SinksStep(Step):
    kind = "sinks"
    record_kind = "sinks"
    uses_data = True
    Options = SinksOptions

    def wants_data(self, config: dict) -> bool:
        return "text" not in config

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "kv_head", "score", "sink_fraction"}

    def validate_options(self, options: SinksOptions) -> None:
        if options.window < 2:
            raise OptionError(f"{flag('window')} must be at least 2 tokens, got {options.window}")
        if not 0 < options.eps < 1:
            raise OptionError(f"{flag('eps')} must be in (0, 1), got {options.eps}")
        if options.max_windows is not None and options.max_windows < 1:
            raise OptionError(f"{flag('max_windows')} must be at least 1, got {options.max_windows}")

    def execute(self, ctx: Context, options: SinksOptions, inputs) -> StepOutput:
        from workbench.analyses.sinks import sinks_report
        from workbench.store.store import content_hash
        from workbench.texts import read_text

        if options.text is not None:
            text = read_text(options.text)
        else:
            text = "\n\n".join(ctx.step_texts())
        report, tables = sinks_report(
            ctx.model(), text, window=options.window, eps=options.eps, max_windows=options.max_windows,
            progress=ctx.pipeline is None,
        )  # fmt: skip
        summary = {
            "sink_1": report["sink_1"],
            "sink_k": report["sink_k"],
            "sink_1_per_layer": report["sink_1_per_layer"],
            "hidden_sink_positions": report["hidden_sinks"]["positions_flagged"],
            "sink_dims": report["massive_dims"]["sink_dims"],
            "windows": report["params"]["windows"],
        }
        return StepOutput(
            head_tables={"heads": tables["heads"]},
            arrays={name: table for name, table in tables.items() if name != "heads"},
            summary=summary,
            artifacts={"report": report},
            input_hash=content_hash(text),
            params=report["params"],
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
