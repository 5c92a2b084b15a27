"""LoFiT (Yin, Ye, Durrett 2024): select heads by learned scales, learn head offsets, apply anywhere.

from workbench.analyses import lofit
questions = lofit.load_task("truthfulqa", "train.csv")
table, scales, _ = lofit.select_heads(model, questions, lofit.TrainConfig.defaults("truthfulqa", 1))
heads = lofit.top_heads(table, 8)
artifact, _ = lofit.train_offsets(model, heads, questions, lofit.TrainConfig.defaults("truthfulqa", 2))
artifact.save("out/lofit"); model.logits(ids, artifact.interventions())
lofit.evaluate(model, "truthfulqa", test_questions, artifact.interventions())  # {"mc1", "mc2", "n"}
"""

from workbench.analyses.heads import top_heads
from workbench.analyses.lofit.artifact import LofitArtifact, load_scales, save_scales
from workbench.analyses.lofit.data import Completion, MCQuestion, load_task, parse_part, sample_path
from workbench.analyses.lofit.fold import export_folded, folded, folded_biases
from workbench.analyses.lofit.metrics import completion_accuracy, evaluate, mc_metrics, truthfulqa_mc
from workbench.analyses.lofit.train import (
    TrainConfig,
    budget_projection,
    random_heads,
    select_heads,
    train_offsets,
    train_shared_budget,
)

__all__ = [
    "Completion",
    "LofitArtifact",
    "MCQuestion",
    "TrainConfig",
    "budget_projection",
    "completion_accuracy",
    "evaluate",
    "export_folded",
    "folded",
    "folded_biases",
    "load_scales",
    "load_task",
    "mc_metrics",
    "parse_part",
    "random_heads",
    "sample_path",
    "save_scales",
    "select_heads",
    "top_heads",
    "train_offsets",
    "train_shared_budget",
    "truthfulqa_mc",
]
