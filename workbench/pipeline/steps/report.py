"""``report``: the HTML report (report.html) with every included step's summary and plotly figures.

    - id: report
      step: report
      title: Sink heads of SmolLM2
      include: [capture, sinks, masking]   # default: every earlier step
      plotlyjs: inline                     # inline (works offline) or cdn (smaller file)

The file is rendered from the steps' recorded outputs on every run, so it is there after a resume too.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.options import StepOptions, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput

PLOTLYJS = ("inline", "cdn")


@dataclass(frozen=True, kw_only=True)
class ReportOptions(StepOptions):
    title: str | None = help_field(None, "the report's title (default: the pipeline's name and model)")
    include: tuple[str, ...] | None = help_field(None, "ids of the steps to show (default: every earlier step)")
    plotlyjs: str = help_field("inline", "inline (works offline) or cdn")
    file: str = help_field("report.html", "file name under the output folder")


class ReportStep(Step):
    kind = "report"
    plumbing = True
    Options = ReportOptions

    def validate(self, config: dict, pipeline) -> None:
        options = self.parse(config, pipeline)
        if options.plotlyjs not in PLOTLYJS:
            raise PipelineError(f"step {config['id']!r}: plotlyjs must be inline or cdn")
        config.setdefault("include", [c["id"] for c in pipeline.steps])  # the step's inputs (and its key)

    def inputs(self, config: dict) -> list[str]:
        return list(config["include"])

    def run(self, ctx: Context, config: dict, inputs: dict[str, StepOutput]) -> StepOutput:
        figures = {
            step_id: len(ctx.pipeline.implementations[step_id].figures(ctx.pipeline.step(step_id), output))
            for step_id, output in inputs.items()
        }
        return StepOutput(summary={"file": self.parse(config, ctx.pipeline).file, "figures": figures})

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs: dict[str, StepOutput]):
        from workbench.pipeline.report import render_report

        sections = []
        for step_id, step_output in inputs.items():
            step_config = ctx.pipeline.step(step_id)
            implementation = ctx.pipeline.implementations[step_id]
            sections.append(
                {
                    "id": step_id,
                    "kind": step_config["step"],
                    "run_id": ctx.run_ids.get(step_id, ""),
                    "summary": step_output.summary,
                    "figures": implementation.figures(step_config, step_output),
                }
            )
        options = self.parse(config, ctx.pipeline)
        title = options.title or f"{ctx.pipeline.name}: {ctx.pipeline.model}"
        text = render_report(title, ctx.pipeline.source, sections, options.plotlyjs)
        path = ctx.out / options.file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return [path]
