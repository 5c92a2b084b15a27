"""``select``: heads chosen by a rule over earlier steps' head tables (see ``workbench.pipeline.rules``).

    - id: candidates
      step: select
      rule:
        intersection:
          - {of: retrieval, by: score, top_fraction: 0.05}
          - {of: capture, by: sink_mass, below: 0.5}

The pipeline's HEADS.json holds the heads of ``outputs.heads`` (default: the last select step).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.options import StepOptions, help_field
from workbench.pipeline.rules import apply_rule, check_rule, rule_sources
from workbench.pipeline.steps.base import Context, Step, StepOutput


@dataclass(frozen=True, kw_only=True)
class SelectOptions(StepOptions):
    rule: dict = help_field(help="a selection rule: of/by plus top_k, top_fraction, above, ... or a combination")


class SelectStep(Step):
    kind = "select"
    plumbing = True
    Options = SelectOptions

    def validate(self, config: dict, pipeline) -> None:
        rule = self.parse(config, pipeline).rule
        where = f"step {config['id']!r}"
        check_rule(rule, where)
        for source, table, column in rule_sources(rule):
            implementation = pipeline.implementations.get(source)
            columns = getattr(implementation, "columns", None)
            if implementation is None or columns is None or table != "heads":
                continue
            known = columns(pipeline.step(source))
            if known is not None and column not in known:
                raise PipelineError(
                    f"{where}: step {source!r} has no column {column!r}; its columns: {sorted(known)}"
                )

    def inputs(self, config: dict) -> list[str]:
        return list(dict.fromkeys(source for source, _, _ in rule_sources(config["rule"])))

    def run(self, ctx: Context, config: dict, inputs: dict[str, StepOutput]) -> StepOutput:
        def tables(step_id: str, name: str):
            try:
                return inputs[step_id].table(name)
            except KeyError as error:
                raise PipelineError(f"step {config['id']!r}: step {step_id!r}: {error.args[0]}") from None

        rule = self.parse(config, ctx.pipeline).rule
        selected = apply_rule(rule, tables)
        first, name, _ = rule_sources(rule)[0]
        universe = tables(first, name)
        summary = {
            "count": len(selected),
            "of": len(universe),
            "heads": [[int(r.layer), int(r.head)] for r in selected.itertuples()],
            "universe": sorted([int(r.layer), int(r.head)] for r in universe.itertuples()),
        }
        if selected.empty:
            ctx.echo(f"  warning: step {config['id']!r} selected no heads; loosen its rule")
        return StepOutput(head_tables={"heads": selected}, summary=summary)

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        from workbench.analyses.heads import write_heads_json

        if ctx.pipeline.heads != config["id"]:
            return []
        path = ctx.out / "HEADS.json"
        params = {"pipeline": ctx.pipeline.name, "step": config["id"], "rule": config["rule"]}
        write_heads_json(
            path, output.table("heads"), ctx.pipeline.model, f"pipeline:{ctx.pipeline.name}", params
        )
        return [path]

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.pipeline.report import selection_figure

        return [selection_figure(output.summary["universe"], output.table("heads"), config["id"])]
