"""Held-out evaluation: baseline against calibrated accuracy, with bootstrap confidence intervals.

The difference is paired (the same items resampled for both), so its interval is narrower than the
two accuracy intervals suggest.
"""

from __future__ import annotations

import torch

from workbench.analyses.batching import SCORE_BATCH
from workbench.analyses.calibration.tasks import Scores, Task, score_task
from workbench.runners.hf import Model


def objective(scores: Scores) -> float:
    """The default search score: accuracy, with the mean margin as a tie-breaker worth < 1e-3."""
    return scores.accuracy + 1e-4 * max(-10.0, min(10.0, scores.margin))


def bootstrap(correct: torch.Tensor, other: torch.Tensor | None = None, samples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile bootstrap of the mean of ``correct`` (or of ``other - correct`` when paired)."""
    values = correct.double() if other is None else other.double() - correct.double()
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, len(values), (samples, len(values)), generator=generator)
    means = values[index].mean(-1)
    alpha = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    out = {"mean": float(values.mean()), "ci": [low, high], "level": level, "samples": samples}
    if other is not None:
        out["p_not_better"] = float((means <= 0).double().mean())  # bootstrap share with no gain
    return out


def evaluate(model: Model, task: Task, interventions=(), samples: int = 2000, seed: int = 0, batch_size: int = SCORE_BATCH, progress: bool = False,
             baseline: list[int] | None = None) -> dict:
    """Accuracy of ``task`` without and with ``interventions``, each with a CI, and the paired difference.
    ``baseline``: per-item correctness from an earlier pass over the same items (skips the baseline pass)."""
    if baseline is not None:
        if len(baseline) != len(task):
            raise ValueError(f"baseline has {len(baseline)} items, the task {len(task)}")
        base_correct, base_margin = torch.tensor(baseline), None
    else:
        base = score_task(model, task, (), batch_size=batch_size, progress=progress)
        base_correct, base_margin = base.correct, base.margin
    result = {"task": task.describe(), "items": len(task),
              "baseline": {"accuracy": float(base_correct.float().mean()), "margin": base_margin,
                           "correct_items": base_correct.tolist(), **bootstrap(base_correct, samples=samples, seed=seed)}}
    if interventions:
        calibrated = score_task(model, task, interventions, batch_size=batch_size, progress=progress)
        result["calibrated"] = {"accuracy": calibrated.accuracy, "margin": calibrated.margin,
                                "correct_items": calibrated.correct.tolist(), **bootstrap(calibrated.correct, samples=samples, seed=seed)}
        result["difference"] = bootstrap(base_correct, calibrated.correct, samples=samples, seed=seed)
        changed = base_correct != calibrated.correct
        result["flips"] = {"fixed": int((changed & calibrated.correct.bool()).sum()), "broken": int((changed & base_correct.bool()).sum())}
    return result
