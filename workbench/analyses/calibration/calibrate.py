"""Calibration searches: profile candidate head groups on a calibration split, add them greedily, and
return a CAL.json dictionary whose ``interventions`` the evaluation (or any runner) can load.

ZeroTuning profiles each candidate at a trial gamma (> 1): groups that gain are up-effective (kept at
gamma), groups that lose are down-effective (tried at 1/gamma); with several trial gammas each
(group, gamma) is profiled. The best are added greedily, then one common strength s is tuned on the
log scale (gamma_i ** s). ACT profiles each candidate
alone (the paper keeps those that beat the baseline: ``filter``) and also adds them greedily
(``greedy``, HeadHunter); the chosen selection goes into ``interventions``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

from workbench.analyses.batching import SCORE_BATCH
from workbench.analyses.calibration import interventions as methods
from workbench.analyses.calibration.evaluate import objective
from workbench.analyses.calibration.search import Candidate, candidates, greedy, profile
from workbench.analyses.calibration.tasks import Task, score_task
from workbench.runners.hf import Model
from workbench.seam.interventions import Intervention
from workbench.seam.spec import SpecError


def _scorer(model: Model, task: Task, batch_size: int, log: list, progress: bool = False) -> Callable[[list], float]:
    """Score a set of interventions on ``task``; memoised, since greedy step 1 re-scores the profiled
    singletons (scoring is deterministic, and each evaluation is a full pass over the split)."""
    cache: dict[str, float] = {}

    def score(interventions: list[Intervention]) -> float:
        key = json.dumps([i.to_dict() for i in interventions], sort_keys=True)
        if key not in cache:
            cache[key] = _evaluate(interventions)
        return cache[key]

    def _evaluate(interventions: list[Intervention]) -> float:
        start = time.time()
        result = score_task(model, task, interventions, batch_size=batch_size)
        log.append({"interventions": len(interventions), "accuracy": result.accuracy, "margin": result.margin})
        if progress:
            tqdm.write(f"evaluation {len(log)}: {len(interventions)} interventions, accuracy {result.accuracy:.3f}, "
                       f"margin {result.margin:+.3f} ({time.time() - start:.0f} s)", file=sys.stderr)
        return objective(result)

    return score


def _heads_list(selected: Sequence[Candidate]) -> list[dict]:
    out = []
    for candidate in selected:
        for layer, head in candidate.heads:
            out.append({"layer": layer, "head": head, "score": candidate.setting if candidate.setting is not None else 1.0,
                        "group": candidate.name})
    return out


def _cal(model: Model, method: str, task: Task, params: dict, baseline: float, chosen: list[Intervention], chosen_score: float,
         selected: Sequence[Candidate], table, steps: list[dict], evaluations: int, extra: dict | None = None) -> dict:
    return {
        "model": model.name, "method": method, "task": task.describe(), "params": params,
        "heads": _heads_list(selected),
        "interventions": [i.to_dict() for i in chosen],
        "calibration": {"items": len(task), "baseline": baseline, "calibrated": chosen_score,
                        "note": "search score = accuracy + 1e-4 * clamp(mean margin, -10, 10)"},
        "search": {"profile": table.to_dict(orient="records"), "greedy": steps, "evaluations": evaluations, **(extra or {})},
    }


def calibrate_zerotuning(
    model: Model,
    task: Task,
    *,
    kind: str = "head_index",
    layers: Sequence[int] | None = None,
    gammas: Sequence[float] = (2.0,),
    scales: Sequence[float] = (0.5, 2.0),
    budget: int = 2,
    pool_size: int = 6,
    batch_size: int = SCORE_BATCH,
    progress: bool = False,
) -> dict:
    if not gammas or any(g <= 0 or g == 1 for g in gammas):
        raise SpecError(f"trial gammas must be > 0 and != 1, got {list(gammas)}")
    shape = model.shape
    groups = candidates(shape.num_layers, shape.num_heads, kind, layers)
    pool = [Candidate(f"{c.name}@{g:g}", c.heads, float(g)) for c in groups for g in gammas]
    log: list = []
    score = _scorer(model, task, batch_size, log, progress)

    def build(selected: Sequence[Candidate], strength: float = 1.0) -> list[Intervention]:
        out: list[Intervention] = []
        for candidate in selected:
            out += methods.zerotuning(candidate.heads, candidate.setting ** strength)
        return out

    baseline = score([])
    table = profile(pool, build, score, baseline, progress)
    if len(gammas) == 1:  # ZeroTuning's rule: up-effective at gamma, down-effective tried at 1/gamma
        by_name = {c.name: c for c in pool}
        up = table.loc[table["gain"] > 0, "candidate"].head(pool_size - pool_size // 2).tolist()
        down = table.loc[table["gain"] < 0, "candidate"].iloc[::-1].head(pool_size // 2).tolist()
        effective = [by_name[n] for n in up]
        effective += [Candidate(f"{by_name[n].name.split('@')[0]}@{1 / gammas[0]:g}", by_name[n].heads, 1 / gammas[0]) for n in down]
    else:
        effective = [c for c in pool if c.name in set(table.loc[table["gain"] > 0, "candidate"].head(pool_size))]
    selected, value, steps = greedy(effective, build, score, baseline, budget, progress=progress)
    strength, sweep = 1.0, [{"strength": 1.0, "score": value}]
    if selected:
        for s in scales:
            trial = score(build(selected, s))
            sweep.append({"strength": float(s), "score": trial})
            if trial > value:
                strength, value = float(s), trial
    chosen = [Candidate(c.name, c.heads, c.setting ** strength) for c in selected]
    params = {"kind": kind, "layers": list(layers) if layers is not None else None, "gammas": list(gammas), "scales": list(scales),
              "budget": budget, "pool_size": pool_size, "strength": strength}
    return _cal(model, "zerotuning", task, params, baseline, build(chosen), value, chosen, table, steps, len(log),
                {"strength_sweep": sweep})


def calibrate_act(
    model: Model,
    task: Task,
    *,
    kind: str = "block",
    layers: Sequence[int] | None = None,
    threshold: float = 0.1,
    beta: float = 0.4,
    budget: int = 2,
    pool_size: int = 4,
    select: str = "greedy",
    batch_size: int = SCORE_BATCH,
    progress: bool = False,
) -> dict:
    if select not in ("greedy", "filter"):
        raise SpecError(f"select must be greedy or filter, got {select!r}")
    shape = model.shape
    if layers is None:  # the paper's candidate layers: 2 .. L-2 (all layers of a very shallow model)
        layers = list(range(2, shape.num_layers - 1)) or list(range(shape.num_layers))
    pool = candidates(shape.num_layers, shape.num_heads, kind, layers)
    log: list = []
    score = _scorer(model, task, batch_size, log, progress)

    def build(selected: Sequence[Candidate]) -> list[Intervention]:
        return [i for c in selected for i in methods.act(c.heads, threshold=threshold, beta=beta)]

    baseline = score([])
    table = profile(pool, build, score, baseline, progress)
    improving = [c for c in pool if c.name in set(table.loc[table["gain"] > 0, "candidate"])]
    filter_score = score(build(improving)) if improving else baseline
    ranked = [c for c in pool if c.name in set(table.loc[table["gain"] > 0, "candidate"].head(pool_size))]
    selected, value, steps = greedy(ranked, build, score, baseline, budget, progress=progress)
    if select == "filter":
        selected, value = improving, filter_score
    params = {"kind": kind, "layers": list(layers), "threshold": threshold, "beta": beta, "budget": budget,
              "pool_size": pool_size, "select": select}
    extra = {"filter": {"candidates": [c.name for c in improving], "score": filter_score}}
    return _cal(model, "act", task, params, baseline, build(selected), value, selected, table, steps, len(log), extra)
