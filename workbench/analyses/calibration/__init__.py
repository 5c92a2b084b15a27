"""Attention calibration as interventions (ACT, ZeroTuning, VAR-style, SoftPAG), a shared head search,
tasks and a held-out evaluation with bootstrap confidence intervals."""

from workbench.analyses.calibration.calibrate import calibrate_act, calibrate_zerotuning
from workbench.analyses.calibration.evaluate import bootstrap, evaluate, objective
from workbench.analyses.calibration.interventions import (
    ACT,
    Redistribute,
    SoftPAG,
    act,
    act_sinks,
    column_means,
    move_mass,
    redistribute,
    softpag,
    zerotuning,
)
from workbench.analyses.calibration.search import Candidate, candidates, greedy, profile
from workbench.analyses.calibration.tasks import Item, Scores, Task, load_task, score_task

__all__ = [
    "ACT", "Redistribute", "SoftPAG", "act", "act_sinks", "column_means", "move_mass", "redistribute", "softpag",
    "zerotuning", "Candidate", "candidates", "greedy", "profile", "Item", "Scores", "Task", "load_task", "score_task",
    "bootstrap", "evaluate", "objective", "calibrate_act", "calibrate_zerotuning",
]
