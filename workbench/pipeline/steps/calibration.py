"""Attention-calibration Steps (workbench.analyses.calibration): ``calibrate-act`` and
``calibrate-zerotuning`` (search heads on a task's calibration split; the summary is CAL.json) and
``eval-task`` (accuracy with bootstrap CIs, baseline and with interventions). ``workbench calibrate act|
zerotuning`` and ``workbench eval task`` run them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.pipeline.options import OptionError, StepOptions, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput

TASK_HELP = "task: sentiment (shipped), truthfulqa, clutrr (need ../shared/data) or a .csv/.jsonl task file"
NAMED_TASKS = ("sentiment", "truthfulqa", "clutrr")  # load_task's built-in tasks (a test keeps them equal)


@dataclass(frozen=True, kw_only=True)
class TaskOptions(StepOptions):
    task: str = help_field("sentiment", TASK_HELP, path=True, names=NAMED_TASKS)
    split: str = help_field("calibration", "split searched on (never the test split you report)")
    limit: int | None = help_field(None, "use at most N items (seeded sample)")
    chat: bool = help_field(False, "wrap prompts in the chat template")
    length_norm: bool = help_field(False, "options mode: mean instead of summed log-likelihood")
    batch_size: int = help_field(16, "items per forward pass")

    def load_task(self):
        from workbench.analyses.calibration.tasks import load_task

        loaded = load_task(self.task, self.split, self.limit)
        loaded.chat = self.chat
        loaded.length_norm = self.length_norm
        return loaded


def _identity(data: dict, params: dict) -> dict:
    from workbench.store.store import content_hash

    return {"input_hash": content_hash(data.get("task"), params), "params": params}


class _CalibrateStep(Step):
    def validate_options(self, o: TaskOptions) -> None:
        if o.split == "test":
            raise OptionError("calibrate on the calibration split; the test split is for `workbench eval task`")


@dataclass(frozen=True, kw_only=True)
class ActOptions(TaskOptions):
    candidates: str = help_field("block", "head groups: block (3 layers), layer, head_index or head")
    layers: tuple[int, ...] | None = help_field(None, "comma-separated candidate layers (default 2..L-2)")
    threshold: float = help_field(0.1, "ACT sink threshold on the column mean")
    beta: float = help_field(0.4, "share of sink attention kept")
    budget: int = help_field(2, "greedy additions at most")
    select: str = help_field("greedy", "greedy (HeadHunter) or filter (every improving group, as ACT)")


class ActStep(_CalibrateStep):
    """ACT: profile head groups one at a time on the calibration split, add them greedily."""

    kind = "calibrate-act"
    record_kind = "calibrate-act"
    Options = ActOptions

    def execute(self, ctx: Context, o: ActOptions, inputs) -> StepOutput:
        from workbench.analyses.calibration import calibrate_act

        task = o.load_task()
        data = calibrate_act(ctx.model(), task, kind=o.candidates, layers=o.layers, threshold=o.threshold, beta=o.beta,
                             budget=o.budget, select=o.select, batch_size=o.batch_size, progress=ctx.pipeline is None)  # fmt: skip
        return StepOutput(summary=data, **_identity(data, data["params"]))


@dataclass(frozen=True, kw_only=True)
class ZeroTuningOptions(TaskOptions):
    candidates: str = help_field("head_index", "head groups: head_index (ZeroTuning), block, layer or head")
    layers: tuple[int, ...] | None = help_field(None, "comma-separated candidate layers (default all)")
    gammas: tuple[float, ...] = help_field((2.0,), "trial gamma(s); one gamma: groups that lose are retried at 1/gamma")
    budget: int = help_field(2, "greedy additions at most")


class ZeroTuningStep(_CalibrateStep):
    """ZeroTuning: profile head groups at trial gammas, add them greedily, tune the strength."""

    kind = "calibrate-zerotuning"
    record_kind = "calibrate-zerotuning"
    Options = ZeroTuningOptions

    def execute(self, ctx: Context, o: ZeroTuningOptions, inputs) -> StepOutput:
        from workbench.analyses.calibration import calibrate_zerotuning

        task = o.load_task()
        data = calibrate_zerotuning(ctx.model(), task, kind=o.candidates, layers=o.layers, gammas=o.gammas,
                                    budget=o.budget, batch_size=o.batch_size, progress=ctx.pipeline is None)  # fmt: skip
        return StepOutput(summary=data, **_identity(data, data["params"]))


def read_interventions(path: Path):
    """Interventions from CAL.json (or any JSON list of interventions); data only."""
    import workbench.analyses.calibration.interventions  # noqa: F401  (registers act, var, softpag)
    from workbench.seam.interventions import interventions_from_json

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"intervention file {path} does not exist")
    return interventions_from_json(path.read_text())


@dataclass(frozen=True, kw_only=True)
class EvalTaskOptions(TaskOptions):
    split: str = help_field("test", "split to evaluate (held out from calibration)")
    intervention: tuple[Path, ...] = help_field(
        (),
        "CAL.json or a JSON list of interventions; repeat to compare several against one baseline pass",
        path=True,
    )
    bootstrap: int = help_field(2000, "bootstrap resamples for the confidence intervals")


class EvalTaskStep(Step):
    """Accuracy with 95% bootstrap CIs, baseline and calibrated, plus the paired difference."""

    kind = "eval-task"
    record_kind = "eval-task"
    Options = EvalTaskOptions

    def validate_options(self, o: EvalTaskOptions) -> None:
        if o.bootstrap < 1 or o.batch_size < 1:
            raise OptionError("--bootstrap and --batch-size must be at least 1")

    def execute(self, ctx: Context, o: EvalTaskOptions, inputs) -> StepOutput:
        from workbench.analyses.calibration.evaluate import evaluate

        paths = list(o.intervention)
        loaded_sets = [read_interventions(path) for path in paths]
        task = o.load_task()
        model = ctx.model()
        progress = ctx.pipeline is None
        result = evaluate(model, task, loaded_sets[0] if loaded_sets else [], samples=o.bootstrap,
                          batch_size=o.batch_size, progress=progress)  # fmt: skip
        result["model"] = model.name
        result["intervention"] = str(paths[0]) if paths else None
        # one baseline pass; every file gets its own calibrated accuracy and paired difference
        comparisons = []
        for index, (path, interventions) in enumerate(zip(paths, loaded_sets, strict=True)):
            other = result if index == 0 else evaluate(
                model, task, interventions, samples=o.bootstrap, batch_size=o.batch_size, progress=progress,
                baseline=result["baseline"]["correct_items"],
            )  # fmt: skip
            comparisons.append({"intervention": str(path), **{k: other[k] for k in ("calibrated", "difference", "flips") if k in other}})
        if len(comparisons) > 1:
            result["comparisons"] = comparisons
        params = {"intervention": [str(p) for p in paths] or None, "split": o.split}
        return StepOutput(summary=result, artifacts={"task": task, "comparisons": comparisons},
                          **_identity(result, params))  # fmt: skip
