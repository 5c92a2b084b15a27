"""Step names a pipeline file may use, each imported only when a pipeline names it.

Analysis steps name the analysis modules they need (``requires``); a pipeline that uses one whose
analysis is not in this installation fails at validation, before anything runs, with the module's name.
Add a step with ``register_step(StepEntry(...))``.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from workbench.pipeline.errors import PipelineError


@dataclass(frozen=True)
class StepEntry:
    name: str
    module: str  # "package.module:ClassName"
    description: str
    requires: tuple[str, ...] = ()  # analysis modules the step imports


_STEPS: dict[str, StepEntry] = {}


def register_step(entry: StepEntry) -> StepEntry:
    _STEPS[entry.name] = entry
    return entry


def known_steps() -> list[StepEntry]:
    return list(_STEPS.values())


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def missing_modules(entry: StepEntry) -> list[str]:
    wanted = [entry.module.split(":")[0], *entry.requires]
    return [name for name in wanted if not _module_exists(name)]


def load_step(name: str):
    """An instance of the step class called ``name``; PipelineError if unknown or its analysis is missing."""
    entry = _STEPS.get(name)
    if entry is None:
        known = ", ".join(sorted(_STEPS))
        raise PipelineError(f"unknown step {name!r}; known steps: {known}")
    missing = missing_modules(entry)
    if missing:
        raise PipelineError(
            f"step {name!r} needs {', '.join(missing)}, which is not in this installation "
            f"({entry.description}); remove the step or update the workbench"
        )
    module_name, class_name = entry.module.split(":")
    return getattr(importlib.import_module(module_name), class_name)()


for _entry in (
    StepEntry(
        "capture", "workbench.pipeline.steps.capture:CaptureStep", "attention statistics -> head table"
    ),
    StepEntry(
        "capture-text",
        "workbench.pipeline.steps.capture:CaptureTextStep",
        "one text's full capture: head table, per-token statistics, pooled map",
    ),
    StepEntry(
        "select", "workbench.pipeline.steps.select:SelectStep", "choose heads by a rule over head tables"
    ),
    StepEntry(
        "validate",
        "workbench.pipeline.steps.validate:ValidateStep",
        "intervene on the selected heads vs baseline and random heads; record metric deltas",
    ),
    StepEntry("report", "workbench.pipeline.steps.report:ReportStep", "HTML report with the plotly figures"),
    StepEntry(
        "retrieval",
        "workbench.pipeline.steps.retrieval:RetrievalStep",
        "retrieval-head scores from needle-in-a-haystack runs",
        ("workbench.analyses.retrieval.niah",),
    ),
    StepEntry(
        "niah-eval",
        "workbench.pipeline.steps.retrieval:NiahEvalStep",
        "needle-in-a-haystack success, optionally with heads masked",
        ("workbench.analyses.retrieval.niah",),
    ),
    StepEntry(
        "retrieval-validate",
        "workbench.pipeline.steps.retrieval:ValidateRetrievalStep",
        "causal check of retrieval heads: NIAH with top-K vs random heads masked",
        ("workbench.analyses.retrieval.masking",),
    ),
    StepEntry(
        "streaming",
        "workbench.pipeline.steps.streaming:StreamingStep",
        "streaming vs retrieval heads: DuoAttention gates or the long-range-mass proxy",
        ("workbench.analyses.retrieval.streaming",),
    ),
    StepEntry(
        "influence",
        "workbench.pipeline.steps.streaming:InfluenceStep",
        "AttentionInfluence: loss increase per document with the top retrieval heads made uniform",
        ("workbench.analyses.retrieval.influence",),
    ),
    StepEntry(
        "calibrate-act",
        "workbench.pipeline.steps.calibration:ActStep",
        "ACT attention calibration: head groups searched on a task's calibration split",
        ("workbench.analyses.calibration",),
    ),
    StepEntry(
        "calibrate-zerotuning",
        "workbench.pipeline.steps.calibration:ZeroTuningStep",
        "ZeroTuning attention calibration: head groups and strength searched on a calibration split",
        ("workbench.analyses.calibration",),
    ),
    StepEntry(
        "eval-task",
        "workbench.pipeline.steps.calibration:EvalTaskStep",
        "task accuracy with bootstrap CIs, baseline and with interventions",
        ("workbench.analyses.calibration.evaluate",),
    ),
    StepEntry(
        "sinks",
        "workbench.pipeline.steps.sinks:SinksStep",
        "attention-sink scores per head",
        ("workbench.analyses.sinks",),
    ),
    StepEntry(
        "rhythm",
        "workbench.pipeline.steps.rhythm:RhythmStep",
        "preplan/anchor rhythm: head groups by mean backward distance",
        ("workbench.analyses.rhythm",),
    ),
    StepEntry(
        "lofit",
        "workbench.pipeline.steps.lofit:LofitStep",
        "LoFiT head selection by learned attention-output scales",
        ("workbench.analyses.lofit",),
    ),
    StepEntry(
        "lofit-train",
        "workbench.pipeline.steps.lofit:LofitTrainStep",
        "LoFiT offsets learned for chosen heads (model frozen)",
        ("workbench.analyses.lofit",),
    ),
    StepEntry(
        "lofit-eval",
        "workbench.pipeline.steps.lofit:LofitEvalStep",
        "MC1/MC2 or accuracy of a model with or without LoFiT offsets",
        ("workbench.analyses.lofit",),
    ),
    StepEntry(
        "lofit-compare",
        "workbench.pipeline.steps.lofit:LofitCompareStep",
        "base vs LoFiT vs random (vs retrieval) heads at equal parameter count, over seeds",
        ("workbench.analyses.lofit.compare",),
    ),
    StepEntry(
        "lofit-fold",
        "workbench.pipeline.steps.lofit:LofitFoldStep",
        "LoFiT offsets folded into o_proj biases: a transformers model without the workbench",
        ("workbench.analyses.lofit.fold",),
    ),
    StepEntry(
        "binding",
        "workbench.pipeline.steps.binding:BindingStep",
        "object binding in a ViT: IsSameObject probes and per-head attention AUROC",
        ("workbench.analyses.binding",),
    ),
):
    register_step(_entry)
