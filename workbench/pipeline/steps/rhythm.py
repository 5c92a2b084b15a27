"""``rhythm``: preplan/anchor rhythm of a model's answers (workbench.analyses.rhythm): head groups by mean
backward distance, per-token WAAD/FAI and credit weights, with their baselines.

    - id: rhythm
      step: rhythm
      problems: null          # JSONL of {question, answer}; default: the bundled arithmetic problems
      limit: 4
      max_new_tokens: 64
      layers: null            # default: the middle third

Head table (the analysed layers): ``score`` = mean backward distance, ``local_fraction``,
``global_fraction``, ``group`` (local / global / middle). ``workbench rhythm`` runs the same Step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.pipeline.options import OptionError, StepOptions, flag, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput, write_parquet

if TYPE_CHECKING:
    from workbench.analyses.rhythm.problems import Problem


@dataclass(frozen=True, kw_only=True)
class RhythmOptions(StepOptions):
    problems: Path | None = help_field(
        None, "JSONL, one {'question': ...} per line (default: the bundled arithmetic problems)", path=True
    )
    limit: int | None = help_field(None, "use only the first N problems")
    max_new_tokens: int = help_field(128, "greedy response length bound")
    layers: tuple[int, ...] | None = help_field(None, "comma-separated layers (default: the middle third)")
    instruction: str | None = help_field(
        None, "text appended to each question ('' = none; default: step by step, '####')"
    )
    batch_size: int = help_field(8, "problems generated together")
    perturb: bool = help_field(False, "also run the high- vs low-FAI perturbation test")
    shuffles: int = help_field(1000, "shuffles for the baselines")
    seed: int = help_field(0, "seed of the shuffles and the perturbation test")
    continuation: int = help_field(32, "tokens generated after each perturbation")
    alpha: float | None = help_field(None, "share of a dominated anchor's bonus moved to its intro token (default 0.5)")
    amplification: float | None = help_field(None, "gamma of a credited token (default 1.5)")
    tau_waad: float | None = help_field(None, "WAAD ceiling of dominated anchors (default: median)")
    tau_delta: float | None = help_field(None, "|Delta WAAD| floor before dominated anchors (default: the preplan cut)")

    def params(self):
        """The analysis knobs (``RhythmParams``; a knob left out keeps its default there)."""
        from workbench.analyses.rhythm.credit import RhythmParams

        knobs = {k: getattr(self, k) for k in ("alpha", "amplification", "tau_waad", "tau_delta")}
        try:
            return RhythmParams(**{k: v for k, v in knobs.items() if v is not None})
        except ValueError as error:
            raise OptionError(str(error)) from None


class RhythmStep(Step):
    kind = "rhythm"
    record_kind = "rhythm"
    Options = RhythmOptions

    def __init__(self, problems=None, progress: bool = True):
        self.problems = problems  # Problem objects given by a notebook (else read from the options)
        self.progress = progress

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "score", "mean_distance", "local_fraction", "global_fraction", "group"}

    def validate_options(self, o: RhythmOptions) -> None:
        if o.max_new_tokens < 2:
            raise OptionError(f"{flag('max_new_tokens')} must be at least 2")
        if o.limit is not None and o.limit < 1:
            raise OptionError(f"{flag('limit')} must be at least 1")
        if o.batch_size < 1 or o.shuffles < 1:
            raise OptionError("--batch-size and --shuffles must be at least 1")
        if o.problems is not None and not Path(o.problems).exists():
            raise OptionError(f"problems file {str(o.problems)!r} does not exist")
        o.params()

    def execute(self, ctx: Context, o: RhythmOptions, inputs) -> StepOutput:
        from workbench.analyses.rhythm.job import rhythm_record
        from workbench.analyses.rhythm.problems import INSTRUCTION, load_problems

        problems = self.problems if self.problems is not None else load_problems(o.problems, limit=o.limit)
        model = ctx.model()
        ctx.echo(f"{model}: {len(problems)} problems, up to {o.max_new_tokens} new tokens each")
        return rhythm_record(
            model, problems, max_new_tokens=o.max_new_tokens, params=o.params(), layers=o.layers,
            instruction=INSTRUCTION if o.instruction is None else o.instruction, batch_size=o.batch_size,
            shuffles=o.shuffles, seed=o.seed, perturb=o.perturb, continuation=o.continuation, progress=self.progress,
        )  # fmt: skip

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.plots import head_heatmap

        return [
            head_heatmap(output.table("heads"), "mean_distance", title=f"{config['id']}: mean backward distance")
        ]


def rhythm_job(model, problems: Sequence[Problem], out: Path, *, progress: bool = True, store=None, echo=print,
               **options) -> dict:  # fmt: skip
    """For notebooks: the Step ``rhythm`` on ``problems`` with ``model`` (``options``: the fields of
    ``RhythmOptions``), recorded through the pipeline runner, its files written under ``out``; returns
    the summary with the run id."""
    from workbench.analyses.rhythm.job import write_rhythm_files
    from workbench.pipeline.runner import run_step

    done = run_step(RhythmStep(problems=problems, progress=progress), RhythmOptions(model=model.name, **options),
                    model=model, store=store, echo=echo)  # fmt: skip
    summary = {**done.output.summary, "run_id": done.run_id}
    write_rhythm_files(out, done.output, summary)
    echo(f"wrote {out}/tokens.parquet ({len(done.output.table('tokens'))} tokens), summary.json; run {done.run_id}")
    return summary
