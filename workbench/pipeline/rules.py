"""Selection rules over head tables, written as YAML data.

A leaf picks heads from one step's table by one column (``by``, default ``score``)::

    {of: retrieval, by: score, top_fraction: 0.05}      # top 5% by retrieval score
    {of: capture, by: sink_mass, below: 0.2}             # threshold (also: above)
    {of: capture, by: sink_mass, bottom_k: 10}           # also: top_k, bottom_fraction
    {of: capture, by: label, equals: long-range}         # a label column
    {of: capture, all: true}                             # every head

and rules combine: ``{intersection: [rule, rule, ...]}``, ``{union: [...]}``, ``{difference: [a, b, ...]}``
(heads of ``a`` in none of the others). ``table:`` picks a table other than ``heads``. The selected
heads keep the columns of the first leaf's table; ``score`` is that leaf's ``by`` column.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from workbench.analyses.heads import make_head_table
from workbench.pipeline.errors import PipelineError

CRITERIA = ("top_k", "bottom_k", "top_fraction", "bottom_fraction", "above", "below", "equals", "all")
COMBINATORS = ("intersection", "union", "difference")
LEAF_KEYS = {"of", "table", "by", *CRITERIA}


def check_rule(rule, where: str) -> None:
    """Raise PipelineError if ``rule`` is not a well-formed rule; ``where`` names the step for the message."""
    if not isinstance(rule, dict):
        raise PipelineError(f"{where}: a rule is a mapping such as {{of: capture, by: sink_mass, top_k: 5}}")
    combinators = [k for k in rule if k in COMBINATORS]
    if combinators:
        if len(rule) != 1:
            raise PipelineError(f"{where}: {combinators[0]} must be the rule's only key, got {sorted(rule)}")
        parts = rule[combinators[0]]
        if not isinstance(parts, list) or len(parts) < 2:
            raise PipelineError(f"{where}: {combinators[0]} needs a list of at least two rules")
        for part in parts:
            check_rule(part, where)
        return
    extra = sorted(set(rule) - LEAF_KEYS)
    if extra:
        raise PipelineError(
            f"{where}: unknown rule key(s) {extra}; a rule uses of/by/table plus one of {list(CRITERIA)}, "
            f"or one of {list(COMBINATORS)}"
        )
    if not isinstance(rule.get("of"), str):
        raise PipelineError(f"{where}: a rule needs 'of: <step id>' (the step whose head table it reads)")
    criteria = [k for k in rule if k in CRITERIA]
    if len(criteria) != 1:
        raise PipelineError(
            f"{where}: a rule needs exactly one of {list(CRITERIA)}, got {criteria or 'none'}"
        )
    name, value = criteria[0], rule[criteria[0]]
    if name in ("top_k", "bottom_k") and not (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ):
        raise PipelineError(f"{where}: {name} must be an integer >= 1, got {value!r}")
    if name in ("top_fraction", "bottom_fraction") and not (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
    ):
        raise PipelineError(f"{where}: {name} must be a fraction in (0, 1] (5% is 0.05), got {value!r}")
    if name in ("above", "below") and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise PipelineError(f"{where}: {name} must be a number, got {value!r}")
    if name == "all" and value is not True:
        raise PipelineError(f"{where}: all must be true")


def rule_sources(rule) -> list[tuple[str, str, str]]:
    """(step id, table, column) of every leaf, in order."""
    if any(k in rule for k in COMBINATORS):
        return [s for part in next(rule[k] for k in COMBINATORS if k in rule) for s in rule_sources(part)]
    return [(rule["of"], rule.get("table", "heads"), rule.get("by", "score"))]


def _leaf(rule: dict, tables: Callable[[str, str], pd.DataFrame]) -> pd.DataFrame:
    table = tables(rule["of"], rule.get("table", "heads"))
    by = rule.get("by", "score")
    if "all" in rule and by not in table.columns and "by" not in rule:
        return table.assign(score=0.0)  # every head, no ranking asked for
    if by not in table.columns:
        raise PipelineError(
            f"rule on step {rule['of']!r}: its table has no column {by!r}; columns: {list(table.columns)}"
        )
    frame = table.copy()
    frame["score"] = frame[by]
    if "top_k" in rule or "top_fraction" in rule or "bottom_k" in rule or "bottom_fraction" in rule:
        bottom = "bottom_k" in rule or "bottom_fraction" in rule
        if "top_k" in rule or "bottom_k" in rule:
            count = rule.get("top_k", rule.get("bottom_k"))
        else:
            count = max(1, round(rule.get("top_fraction", rule.get("bottom_fraction")) * len(frame)))
        frame = frame.sort_values([by, "layer", "head"], ascending=[bottom, True, True], kind="stable")
        frame = frame.head(min(count, len(frame)))
    elif "above" in rule:
        frame = frame[frame[by] > rule["above"]]
    elif "below" in rule:
        frame = frame[frame[by] < rule["below"]]
    elif "equals" in rule:
        frame = frame[frame[by] == rule["equals"]]
    return frame


def _keys(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["layer"].astype(int), frame["head"].astype(int), strict=True))


def _apply(rule: dict, tables) -> pd.DataFrame:
    if "intersection" in rule or "union" in rule or "difference" in rule:
        name = next(k for k in COMBINATORS if k in rule)
        parts = [_apply(part, tables) for part in rule[name]]
        first = parts[0]
        pairs = list(zip(first["layer"].astype(int), first["head"].astype(int), strict=True))
        if name == "intersection":
            keep = set.intersection(*(_keys(p) for p in parts))
            return first[[pair in keep for pair in pairs]]
        if name == "difference":
            drop = set().union(*(_keys(p) for p in parts[1:]))
            return first[[pair not in drop for pair in pairs]]
        merged = pd.concat(parts, ignore_index=True)
        return merged.drop_duplicates(["layer", "head"], keep="first")
    return _leaf(rule, tables)


def apply_rule(rule: dict, tables: Callable[[str, str], pd.DataFrame]) -> pd.DataFrame:
    """The selected heads as a head table (sorted by score), with the rule in ``attrs['params']``."""
    selected = _apply(rule, tables)
    rows = selected.to_dict(orient="records")
    if not rows:
        return make_head_table(pd.DataFrame(columns=["layer", "head", "score"]), "select", {"rule": rule})
    table = make_head_table(rows, "select", {"rule": rule})
    table["layer"] = table["layer"].astype(int)
    table["head"] = table["head"].astype(int)
    return table
