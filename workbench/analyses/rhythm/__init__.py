"""Preplan-and-anchor rhythm (spec §4): WAAD and FAI from the seam's statistics, head groups by mean
backward distance, preplan/anchor tokens, per-token credit weights and the analysis statistics.

    from workbench.analyses.rhythm import run_rhythm, summarize, token_table, rhythm_figure
"""

from workbench.analyses.rhythm.credit import (
    RhythmParams,
    credit_coupled,
    credit_global,
    credit_local,
    credit_weights,
)
from workbench.analyses.rhythm.detect import (
    anchor_tokens,
    group_heads,
    locally_dominated,
    middle_third,
    preplan_tokens,
    top_fraction,
    waad_delta,
)
from workbench.analyses.rhythm.pipeline import ResponseRhythm, analyse_response, perturbation_test, run_rhythm
from workbench.analyses.rhythm.plot import rhythm_figure
from workbench.analyses.rhythm.problems import Problem, load_problems
from workbench.analyses.rhythm.statistics import coupling, entropy_lift, jaccard
from workbench.analyses.rhythm.summary import head_group_table, summarize, token_table

__all__ = [
    "Problem",
    "ResponseRhythm",
    "RhythmParams",
    "analyse_response",
    "anchor_tokens",
    "coupling",
    "credit_coupled",
    "credit_global",
    "credit_local",
    "credit_weights",
    "entropy_lift",
    "group_heads",
    "head_group_table",
    "jaccard",
    "load_problems",
    "locally_dominated",
    "middle_third",
    "perturbation_test",
    "preplan_tokens",
    "rhythm_figure",
    "run_rhythm",
    "summarize",
    "token_table",
    "top_fraction",
    "waad_delta",
]
