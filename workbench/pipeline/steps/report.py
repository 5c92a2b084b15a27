"""``report``: the HTML report (report.html) with every included step's summary and plotly figures.

    - id: report
      step: report
      title: Sink heads of SmolLM2
      include: [capture, sinks, masking]   # default: every earlier step
      plotlyjs: inline                     # inline (works offline) or cdn (smaller file)

The file is rendered from the steps' recorded outputs on every run, so it is there after a resume too.
"""

from __future__ import annotations

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.steps.base import Context, Step, StepOutput, option


class ReportStep(Step):
    kind = "report"
    options = {
        "title": "the report's title",
        "include": "ids of the steps to show (default: every earlier step)",
        "plotlyjs": "inline (default, works offline) or cdn",
        "file": "file name under the output folder (default report.html)",
    }

    def validate(self, config: dict, pipeline) -> None:
        option(config, "title", str, "text")
        option(config, "file", str, "a file name")
        if option(config, "plotlyjs", str, "inline or cdn", "inline") not in ("inline", "cdn"):
            raise PipelineError(f"step {config['id']!r}: plotlyjs must be inline or cdn")
        include = config.setdefault("include", [c["id"] for c in pipeline.steps])
        if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
            raise PipelineError(f"step {config['id']!r}: include must be a list of step ids")

    def inputs(self, config: dict) -> list[str]:
        return list(config["include"])

    def run(self, ctx: Context, config: dict, inputs: dict[str, StepOutput]) -> StepOutput:
        figures = {
            step_id: len(ctx.pipeline.implementations[step_id].figures(ctx.pipeline.step(step_id), output))
            for step_id, output in inputs.items()
        }
        return StepOutput(summary={"file": config.get("file", "report.html"), "figures": figures})

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
        title = config.get("title") or f"{ctx.pipeline.name}: {ctx.pipeline.model}"
        text = render_report(title, ctx.pipeline.source, sections, config.get("plotlyjs", "inline"))
        path = ctx.out / config.get("file", "report.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return [path]
