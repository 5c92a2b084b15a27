"""Two head tables side by side: two models, two checkpoints, two prompt sets.

For every (layer, head) present in both tables and every statistic both have: value A, value B and the
difference B - A. Per statistic: the largest absolute difference, the Spearman rank correlation over the
shared heads, and how many of A's top-k heads are also among B's top-k. The CLI (``workbench compare``)
and the dashboard's Compare page both call ``compare_runs``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.seam.spec import SpecError

KEYS = ("layer", "head")
NOT_STATISTICS = ("layer", "head", "kv_head")
TOP_K = 10


class CompareError(SpecError):
    """Two tables that cannot be compared (no shared heads or statistics, no such table)."""


@dataclass
class Comparison:
    """``heads``: one row per (layer, head, statistic) with ``a, b, difference`` (b - a);
    ``summary``: one row per statistic with ``heads, max_abs_difference, rank_correlation, top_overlap``."""

    heads: pd.DataFrame
    summary: pd.DataFrame
    a: dict = field(default_factory=dict)  # what run A is (run id, kind, model, table)
    b: dict = field(default_factory=dict)
    top_k: int = TOP_K
    only_in_a: int = 0  # heads in one table but not the other (two models of different shapes)
    only_in_b: int = 0

    def to_dict(self) -> dict:
        return json.loads(
            json.dumps(
                {
                    "a": self.a,
                    "b": self.b,
                    "top_k": self.top_k,
                    "only_in_a": self.only_in_a,
                    "only_in_b": self.only_in_b,
                    "summary": self.summary.to_dict(orient="records"),
                    "heads": self.heads.to_dict(orient="records"),
                },
                default=_plain,
            )
        )

    def wide(self) -> pd.DataFrame:
        """One row per (layer, head); columns ``<statistic>_a, <statistic>_b, <statistic>_difference``."""
        table = self.heads.pivot_table(index=list(KEYS), columns="statistic", values=["a", "b", "difference"])
        table.columns = [f"{statistic}_{part}" for part, statistic in table.columns]
        order = [f"{s}_{p}" for s in self.summary["statistic"] for p in ("a", "b", "difference")]
        return table[order].reset_index()


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def statistics_of(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in NOT_STATISTICS and pd.api.types.is_numeric_dtype(table[c])]


def compare_head_tables(a: pd.DataFrame, b: pd.DataFrame, *, top_k: int = TOP_K) -> Comparison:
    """Compare two head tables (``layer, head`` plus numeric statistic columns); see the module docstring."""
    for name, table in (("A", a), ("B", b)):
        missing = [k for k in KEYS if k not in table]
        if missing:
            raise CompareError(f"head table {name} has no {', '.join(missing)} column")
    shared = [s for s in statistics_of(a) if s in set(statistics_of(b))]
    if not shared:
        raise CompareError(
            f"the two head tables share no statistic (A has {statistics_of(a) or 'none'}, "
            f"B has {statistics_of(b) or 'none'})"
        )
    left = a[list(KEYS) + shared].astype({s: float for s in shared})
    right = b[list(KEYS) + shared].astype({s: float for s in shared})
    merged = left.merge(right, on=list(KEYS), suffixes=("_a", "_b"), how="inner")
    if merged.empty:
        raise CompareError("the two head tables share no (layer, head)")
    merged = merged.sort_values(list(KEYS)).reset_index(drop=True)
    frames, rows = [], []
    for statistic in shared:
        values_a, values_b = merged[f"{statistic}_a"], merged[f"{statistic}_b"]
        frames.append(
            pd.DataFrame(
                {
                    "layer": merged["layer"].astype(int),
                    "head": merged["head"].astype(int),
                    "statistic": statistic,
                    "a": values_a,
                    "b": values_b,
                    "difference": values_b - values_a,
                }
            )
        )
        both = merged[[f"{statistic}_a", f"{statistic}_b"]].dropna()
        k = min(top_k, len(both))
        top_a = set(both.nlargest(k, f"{statistic}_a").index)
        top_b = set(both.nlargest(k, f"{statistic}_b").index)
        rows.append(
            {
                "statistic": statistic,
                "heads": int(len(both)),
                "max_abs_difference": float((both.iloc[:, 1] - both.iloc[:, 0]).abs().max())
                if len(both)
                else math.nan,
                "rank_correlation": spearman(both.iloc[:, 0], both.iloc[:, 1]),
                "top_overlap": len(top_a & top_b),
                "top_k": k,
            }
        )
    keys_a = set(map(tuple, a[list(KEYS)].to_numpy().tolist()))
    keys_b = set(map(tuple, b[list(KEYS)].to_numpy().tolist()))
    return Comparison(
        heads=pd.concat(frames, ignore_index=True),
        summary=pd.DataFrame(rows),
        top_k=top_k,
        only_in_a=len(keys_a - keys_b),
        only_in_b=len(keys_b - keys_a),
    )


def spearman(x, y) -> float:
    """Spearman's rho (Pearson's r of average ranks) of two equal-length sequences; NaN when either side is
    constant or too short. The one definition: head comparisons, streaming correlations and the reports."""
    if len(x) < 2:
        return math.nan
    rx = pd.Series(np.asarray(x, dtype=float)).rank()  # positions, not index labels, pair the two sides
    ry = pd.Series(np.asarray(y, dtype=float)).rank()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(rx.corr(ry))


def compare_runs(
    store, run_a: str, run_b: str, *, table: str | None = None, top_k: int = TOP_K
) -> Comparison:
    """Compare the head tables of two store runs (ids or unique prefixes). ``table``: the head table's name
    (default ``heads``, else the one name both runs have)."""
    records = [store.run(run_a), store.run(run_b)]
    names = [set(store.head_table_names(r["run_id"])) for r in records]
    for record, have in zip(records, names, strict=True):
        if not have:
            raise CompareError(f"run {record['run_id']} ({record['kind']}) has no head table")
    if table is None:
        common = names[0] & names[1]
        if "heads" in common:
            table = "heads"
        elif len(common) == 1:
            table = next(iter(common))
        else:
            raise CompareError(
                f"pick a head table with --table: run A has {sorted(names[0])}, run B has {sorted(names[1])}"
            )
    for record, have in zip(records, names, strict=True):
        if table not in have:
            raise CompareError(f"run {record['run_id']} has no head table {table!r}; it has {sorted(have)}")
    result = compare_head_tables(
        store.head_table(records[0]["run_id"], table),
        store.head_table(records[1]["run_id"], table),
        top_k=top_k,
    )
    result.a, result.b = (
        {"run_id": r["run_id"], "kind": r["kind"], "model": r["model"], "table": table} for r in records
    )
    return result
