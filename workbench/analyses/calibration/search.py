"""Head search shared by ACT, ZeroTuning and SoftPAG: one-at-a-time profiling and HeadHunter's greedy
addition, both with a pluggable score.

A candidate is a named group of heads (one head, every head of a layer, or one head index in every
layer as ZeroTuning's code explores), optionally with its own setting (ZeroTuning's gamma). ``build``
turns a list of candidates into interventions; ``score`` turns interventions into a number to maximise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from workbench.seam.spec import SpecError

Head = tuple[int, int]


@dataclass(frozen=True)
class Candidate:
    name: str
    heads: tuple[Head, ...]
    setting: float | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "heads": [list(h) for h in self.heads], "setting": self.setting}


def candidates(num_layers: int, num_heads: int, kind: str = "head_index", layers: Sequence[int] | None = None) -> list[Candidate]:
    """Candidate groups over ``layers`` (default all): ``head`` (each head), ``layer`` (all heads of a
    layer), ``block`` (all heads of 3 consecutive layers) or ``head_index`` (head h in every layer:
    ``num_heads`` candidates, as ZeroTuning's code explores)."""
    layers = list(range(num_layers)) if layers is None else [int(layer) for layer in layers]
    if not layers:
        raise SpecError("no candidate layers: name at least one layer")
    bad = [layer for layer in layers if not 0 <= layer < num_layers]
    if bad:
        raise SpecError(f"layer(s) {bad} out of range: the model has {num_layers} layers (0..{num_layers - 1})")
    if kind == "head":
        return [Candidate(f"L{layer}H{head}", ((layer, head),)) for layer in layers for head in range(num_heads)]
    if kind == "layer":
        return [Candidate(f"L{layer}", tuple((layer, head) for head in range(num_heads))) for layer in layers]
    if kind == "block":
        blocks = [layers[i : i + 3] for i in range(0, len(layers), 3)]
        return [Candidate(f"L{b[0]}-{b[-1]}", tuple((layer, head) for layer in b for head in range(num_heads))) for b in blocks]
    if kind == "head_index":
        return [Candidate(f"H{head}", tuple((layer, head) for layer in layers)) for head in range(num_heads)]
    raise SpecError(f"unknown candidate kind {kind!r}; choose head, layer, block or head_index")


@dataclass
class SearchResult:
    baseline: float
    profile: pd.DataFrame
    selected: list[Candidate] = field(default_factory=list)
    score: float = float("nan")
    steps: list[dict] = field(default_factory=list)

    def heads(self) -> list[Head]:
        seen: dict[Head, None] = {}
        for candidate in self.selected:
            for head in candidate.heads:
                seen.setdefault(head, None)
        return list(seen)


def profile(
    pool: Sequence[Candidate],
    build: Callable[[Sequence[Candidate]], list],
    score: Callable[[list], float],
    baseline: float,
    progress: bool = False,
) -> pd.DataFrame:
    """Score each candidate alone; ``gain`` is its score minus the baseline (sorted, best first)."""
    rows = []
    for candidate in tqdm(pool, desc="profile", disable=not progress, leave=False):
        value = score(build([candidate]))
        rows.append({"candidate": candidate.name, "setting": candidate.setting, "heads": len(candidate.heads),
                     "score": value, "gain": value - baseline})
    table = pd.DataFrame(rows)
    order = table.sort_values("score", ascending=False, kind="stable").index
    return table.loc[order].reset_index(drop=True)


def greedy(
    pool: Sequence[Candidate],
    build: Callable[[Sequence[Candidate]], list],
    score: Callable[[list], float],
    baseline: float,
    budget: int = 3,
    min_gain: float = 0.0,
    progress: bool = False,
) -> tuple[list[Candidate], float, list[dict]]:
    """HeadHunter: from the empty set, add the candidate that raises the score most; stop at ``budget``
    additions or when no addition gains more than ``min_gain``. Returns (selected, score, steps)."""
    selected: list[Candidate] = []
    current = baseline
    steps: list[dict] = []
    remaining = list(pool)
    for step in range(budget):
        best, best_value = None, None
        for candidate in tqdm(remaining, desc=f"greedy step {step + 1}", disable=not progress, leave=False):
            value = score(build([*selected, candidate]))
            if best_value is None or value > best_value:
                best, best_value = candidate, value
        if best is None or best_value - current <= min_gain:
            steps.append({"step": step + 1, "added": None, "score": current, "tried": len(remaining)})
            break
        selected.append(best)
        taken = set(best.heads)  # the same heads with another setting are no longer candidates
        remaining = [c for c in remaining if c is not best and not taken & set(c.heads)]
        current = best_value
        steps.append({"step": step + 1, "added": best.name, "setting": best.setting, "score": current, "tried": len(remaining) + 1})
    return selected, current, steps
