"""AttentionInfluence tables and findings from ``data/influence/<run>/SCORES.parquet`` (``workbench influence``
output, one row per document).

Verdict rules, fixed before the 2026-12-07 run (spec §7, "small reproduction", steps 2-4):

* the mirror effect (Table 6): masking the top retrieval heads raises a document's loss more than masking
  as many random heads: per domain, the mean over documents of influence(top) - influence(random), with a
  95 % percentile bootstrap interval; ``reproduced`` when it lies above 0, ``not reproduced`` at or below 0;
* not a perplexity proxy: within a domain, |Spearman(AttentionInfluence, L_base)| < 0.3 (0.3: the usual
  bound of a "weak" correlation); ``reproduced`` when the bootstrap interval of rho lies inside (-0.3, 0.3),
  ``not reproduced`` when it lies wholly outside, ``inconclusive`` otherwise.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from workbench.analyses.compare import spearman
from workbench.report.stats import RESAMPLES, SEED, bootstrap_ci, verdict_above_zero

PAPER = "Hua et al. 2025, AttentionInfluence"
PROXY_BOUND = 0.3


def score_files(data: Path) -> list[Path]:
    """Every committed ``data/influence/<run>/SCORES.parquet``, oldest run name first."""
    return sorted((data / "influence").glob("*/SCORES.parquet"))


def spearman_ci(a, b, level: float = 0.95, resamples: int = RESAMPLES // 5, seed: int = SEED):
    """Percentile bootstrap interval of Spearman's rho, resampling (a, b) pairs (2,000 resamples)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    draws = [spearman(a[i], b[i]) for i in rng.integers(0, a.size, size=(resamples, a.size))]
    draws = np.asarray([d for d in draws if np.isfinite(d)])
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def proxy_verdict(low: float, high: float, bound: float = PROXY_BOUND) -> str:
    if -bound < low and high < bound:
        return "reproduced"
    return "not reproduced" if high <= -bound or low >= bound else "inconclusive"


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=16)
def _run(path: Path, stamp: tuple[int, int]) -> tuple[int, list[dict]]:
    """A SCORES.parquet's document count and per-domain statistics, computed once for the table and the
    findings (``stamp``, the file's mtime and size, keys the cache to its contents)."""
    import pandas as pd

    scores = pd.read_parquet(path)
    domains = []
    for domain in sorted(scores.domain.unique()):
        rows = scores[scores.domain == domain]
        stats = {
            "domain": domain, "n": len(rows), "tokens": int(rows.tokens.median()),
            "loss_base": rows.loss_base.mean(), "influence": rows.influence.mean(),
            "rho": spearman(rows.influence, rows.loss_base),
            "rho_increase": spearman(rows.loss_masked - rows.loss_base, rows.loss_base),
            "rho_ci": spearman_ci(rows.influence, rows.loss_base),
        }
        if "influence_random" in scores:
            diffs = (rows.influence - rows.influence_random).to_numpy()
            stats.update(random=rows.influence_random.mean(), diff=float(diffs.mean()), diff_ci=bootstrap_ci(diffs))
        domains.append(stats)
    return len(scores), domains


def _runs(data: Path):
    for path in score_files(data):
        yield path, *_run(path, _stamp(path))


def table(data: Path) -> str:
    parts = []
    for path, count, domains in _runs(data):
        lines = [
            f"`{path.parent.name}`: {count} documents",
            "",
            "| domain | docs | median tokens | mean L_base | AttentionInfluence, top heads | random heads "
            "| top - random [95% CI] | Spearman(score, L_base) [95% CI] | Spearman(L_masked - L_base, L_base) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for d in domains:
            random, diff = "-", "-"
            if "diff" in d:
                random = f"{d['random']:.3f}"
                diff = f"{d['diff']:+.3f} [{d['diff_ci'][0]:+.3f}, {d['diff_ci'][1]:+.3f}]"
            rho = f"{d['rho']:+.2f}"
            if d["n"] >= 20:  # an interval over fewer documents says little
                rho += f" [{d['rho_ci'][0]:+.2f}, {d['rho_ci'][1]:+.2f}]"
            lines.append(
                f"| {d['domain']} | {d['n']} | {d['tokens']} | {d['loss_base']:.3f} | {d['influence']:.3f} "
                f"| {random} | {diff} | {rho} | {d['rho_increase']:+.2f} |"
            )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts) if parts else "No committed SCORES.parquet yet.\n"


def findings(data: Path) -> list[dict]:
    out = []
    for path, _, domains in _runs(data):
        source = f"docs/results/data/influence/{path.parent.name}/SCORES.parquet"
        for d in domains:
            if "diff" not in d:
                continue  # the 8-document run of 2026-12-06 had no control and too few documents per domain
            low, high = d["diff_ci"]
            out.append(
                {
                    "finding": f"AttentionInfluence mirror effect: masking the top-5% retrieval heads raises "
                    f"loss more than as many random heads ({d['domain']} documents)",
                    "paper": PAPER,
                    "metric": f"influence(top heads) - influence(random heads, a fresh set per document), "
                    f"{d['tokens']} tokens",
                    "value": round(d["diff"], 4),
                    "ci": [round(low, 4), round(high, 4)],
                    "n": d["n"],
                    "verdict": verdict_above_zero(low, high),
                    "source": source,
                }
            )
            low, high = d["rho_ci"]
            out.append(
                {
                    "finding": f"AttentionInfluence is not a perplexity proxy: |Spearman(score, L_base)| < "
                    f"{PROXY_BOUND} within {d['domain']} documents",
                    "paper": PAPER,
                    "metric": "Spearman rho of AttentionInfluence and the base loss over documents",
                    "value": round(d["rho"], 4),
                    "ci": [round(low, 4), round(high, 4)],
                    "n": d["n"],
                    "verdict": proxy_verdict(low, high),
                    "source": source,
                }
            )
    return out


# --- the mirror check (benchmarks/influence_mirror.py): Table 6 ----------------------------------------

TASK_NAMES = {"kv": "JSON key-value retrieval", "icl": "8-shot sentiment ICL"}
METRIC_NAMES = {"correct": "accuracy", "loglik": "mean log-likelihood of the value's tokens"}


def _mirror(result: dict, entry: dict, metric: str):
    """A task's per-condition means and the (random sets, items) matrix random - top of ``metric``; None
    while the run lacks a condition (cut before its last random set) or the metric."""
    conditions = entry["conditions"]
    randoms = sorted(c for c in result["conditions"] if c.startswith("random-"))
    names = ["base", "top", *randoms]
    if not randoms or any(metric not in conditions.get(c, {}) for c in names):
        return None
    values = {c: np.asarray(conditions[c][metric], dtype=float) for c in names}
    matrix = [values[c] - values["top"] for c in randoms]
    return {c: float(v.mean()) for c, v in values.items()}, randoms, matrix


def _metrics(entry: dict) -> list[str]:
    first = next(iter(entry["conditions"].values()), {})
    return [m for m in METRIC_NAMES if m in first]


@functools.lru_cache(maxsize=16)
def _mirror_run(path: Path, stamp: tuple[int, int]) -> tuple[dict, list[dict]]:
    """A mirror-check results.json and one row per complete (task, metric), its two-level bootstrap computed
    once for the table and the findings (``stamp``, the file's mtime and size, keys the cache to its contents)."""
    from workbench.report.stats import bootstrap_ci_two_level

    result = json.loads(path.read_text())
    rows = []
    for task, entry in result["tasks"].items():
        for metric in _metrics(entry):
            parts_of = _mirror(result, entry, metric)
            if parts_of is None:
                continue  # a run cut before its last condition
            means, randoms, matrix = parts_of
            rows.append({"task": task, "metric": metric, "means": means, "randoms": randoms, "n": len(matrix[0]),
                         "tokens": "-".join(map(str, entry["prompt_tokens"])), "value": float(np.mean(matrix)),
                         "ci": bootstrap_ci_two_level(matrix)})
    return result, rows


def _mirror_runs(data: Path):
    for path in sorted((data / "influence").glob("*/results.json")):
        yield path, *_mirror_run(path, _stamp(path))


def mirror_table(data: Path) -> str:
    parts = []
    for path, result, rows in _mirror_runs(data):
        lines = [
            f"`{path.parent.name}`: {result['model']} on {result['device']}, top {len(result['conditions']['top'])} "
            f"heads vs {len(result['conditions']) - 2} random sets of as many (outside the top {result['exclude_top']})",
            "",
            "| task | metric | items | prompt tokens | base | top heads masked | random heads masked (each set) "
            "| random - top [95% CI] |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            means, (low, high) = r["means"], r["ci"]
            each = ", ".join(f"{means[c]:.3f}" for c in r["randoms"])
            lines.append(
                f"| {TASK_NAMES.get(r['task'], r['task'])} | {METRIC_NAMES[r['metric']]} | {r['n']} | {r['tokens']} "
                f"| {means['base']:.3f} | {means['top']:.3f} | {each} | {r['value']:+.3f} [{low:+.3f}, {high:+.3f}] |"
            )
        parts.append("\n".join(lines) + "\n")
    if not parts:
        return "No committed mirror-check results yet: run `python benchmarks/influence_mirror.py`.\n"
    return "\n".join(parts)


def mirror_findings(data: Path) -> list[dict]:
    out = []
    for path, result, rows in _mirror_runs(data):
        for r in rows:
            label, (low, high) = METRIC_NAMES[r["metric"]], r["ci"]
            out.append(
                {
                    "finding": f"Masking the top-5% retrieval heads hurts {TASK_NAMES.get(r['task'], r['task'])} "
                    f"({label}) more than masking as many random heads (Table 6)",
                    "paper": PAPER,
                    "metric": f"{label}, random heads masked - top heads masked, {result['model']}, "
                    f"{len(r['randoms'])} random sets",
                    "value": round(r["value"], 4),
                    "ci": [round(low, 4), round(high, 4)],
                    "n": r["n"],
                    "verdict": verdict_above_zero(low, high),
                    "source": f"docs/results/data/influence/{path.parent.name}/results.json",
                }
            )
    return out
