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


def _domains(scores):
    return sorted(d for d in scores.domain.unique())


def table(data: Path) -> str:
    import pandas as pd

    files = score_files(data)
    if not files:
        return "No committed SCORES.parquet yet.\n"
    parts = []
    for path in files:
        scores = pd.read_parquet(path)
        control = "influence_random" in scores
        lines = [
            f"`{path.parent.name}`: {len(scores)} documents",
            "",
            "| domain | docs | median tokens | mean L_base | AttentionInfluence, top heads | random heads "
            "| top - random [95% CI] | Spearman(score, L_base) [95% CI] | Spearman(L_masked - L_base, L_base) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for domain in _domains(scores):
            rows = scores[scores.domain == domain]
            random, diff = "-", "-"
            if control:
                low, high = bootstrap_ci(rows.influence - rows.influence_random)
                random = f"{rows.influence_random.mean():.3f}"
                diff = f"{(rows.influence - rows.influence_random).mean():+.3f} [{low:+.3f}, {high:+.3f}]"
            rho = spearman(rows.influence, rows.loss_base)
            rho_text = f"{rho:+.2f}"
            if len(rows) >= 20:
                low, high = spearman_ci(rows.influence, rows.loss_base)
                rho_text += f" [{low:+.2f}, {high:+.2f}]"
            lines.append(
                f"| {domain} | {len(rows)} | {int(rows.tokens.median())} | {rows.loss_base.mean():.3f} "
                f"| {rows.influence.mean():.3f} | {random} | {diff} | {rho_text} "
                f"| {spearman(rows.loss_masked - rows.loss_base, rows.loss_base):+.2f} |"
            )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def findings(data: Path) -> list[dict]:
    import pandas as pd

    out = []
    for path in score_files(data):
        scores = pd.read_parquet(path)
        if "influence_random" not in scores:
            continue  # the 8-document run of 2026-12-06 had no control and too few documents per domain
        source = f"docs/results/data/influence/{path.parent.name}/SCORES.parquet"
        for domain in _domains(scores):
            rows = scores[scores.domain == domain]
            tokens = int(rows.tokens.median())
            diffs = (rows.influence - rows.influence_random).to_numpy()
            low, high = bootstrap_ci(diffs)
            out.append(
                {
                    "finding": f"AttentionInfluence mirror effect: masking the top-5% retrieval heads raises "
                    f"loss more than as many random heads ({domain} documents)",
                    "paper": PAPER,
                    "metric": f"influence(top heads) - influence(random heads, a fresh set per document), "
                    f"{tokens} tokens",
                    "value": round(float(diffs.mean()), 4),
                    "ci": [round(low, 4), round(high, 4)],
                    "n": len(rows),
                    "verdict": verdict_above_zero(low, high),
                    "source": source,
                }
            )
            low, high = spearman_ci(rows.influence, rows.loss_base)
            out.append(
                {
                    "finding": f"AttentionInfluence is not a perplexity proxy: |Spearman(score, L_base)| < "
                    f"{PROXY_BOUND} within {domain} documents",
                    "paper": PAPER,
                    "metric": "Spearman rho of AttentionInfluence and the base loss over documents",
                    "value": round(spearman(rows.influence, rows.loss_base), 4),
                    "ci": [round(low, 4), round(high, 4)],
                    "n": len(rows),
                    "verdict": proxy_verdict(low, high),
                    "source": source,
                }
            )
    return out


# --- the mirror check (benchmarks/influence_mirror.py): Table 6 ----------------------------------------

TASK_NAMES = {"kv": "JSON key-value retrieval", "icl": "8-shot sentiment ICL"}
METRIC_NAMES = {"correct": "accuracy", "loglik": "mean log-likelihood of the value's tokens"}


def mirror_files(data: Path) -> list[Path]:
    return sorted((data / "influence").glob("*/results.json"))


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


def mirror_table(data: Path) -> str:
    from workbench.report.stats import bootstrap_ci_two_level

    files = mirror_files(data)
    if not files:
        return "No committed mirror-check results yet: run `python benchmarks/influence_mirror.py`.\n"
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        lines = [
            f"`{path.parent.name}`: {result['model']} on {result['device']}, top {len(result['conditions']['top'])} "
            f"heads vs {len(result['conditions']) - 2} random sets of as many (outside the top {result['exclude_top']})",
            "",
            "| task | metric | items | prompt tokens | base | top heads masked | random heads masked (each set) "
            "| random - top [95% CI] |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for task, entry in result["tasks"].items():
            for metric in _metrics(entry):
                parts_of = _mirror(result, entry, metric)
                if parts_of is None:
                    continue
                means, randoms, matrix = parts_of
                low, high = bootstrap_ci_two_level(matrix)
                each = ", ".join(f"{means[c]:.3f}" for c in randoms)
                tokens = "-".join(map(str, entry["prompt_tokens"]))
                lines.append(
                    f"| {TASK_NAMES.get(task, task)} | {METRIC_NAMES[metric]} | {len(matrix[0])} | {tokens} "
                    f"| {means['base']:.3f} | {means['top']:.3f} | {each} "
                    f"| {np.mean(matrix):+.3f} [{low:+.3f}, {high:+.3f}] |"
                )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def mirror_findings(data: Path) -> list[dict]:
    from workbench.report.stats import bootstrap_ci_two_level

    out = []
    for path in mirror_files(data):
        result = json.loads(path.read_text())
        for task, entry in result["tasks"].items():
            for metric in _metrics(entry):
                parts_of = _mirror(result, entry, metric)
                if parts_of is None:
                    continue  # a run cut before its last condition
                means, randoms, matrix = parts_of
                low, high = bootstrap_ci_two_level(matrix)
                label = METRIC_NAMES[metric]
                out.append(
                    {
                        "finding": f"Masking the top-5% retrieval heads hurts {TASK_NAMES.get(task, task)} "
                        f"({label}) more than masking as many random heads (Table 6)",
                        "paper": PAPER,
                        "metric": f"{label}, random heads masked - top heads masked, {result['model']}, "
                        f"{len(randoms)} random sets",
                        "value": round(float(np.mean(matrix)), 4),
                        "ci": [round(low, 4), round(high, 4)],
                        "n": len(matrix[0]),
                        "verdict": verdict_above_zero(low, high),
                        "source": f"docs/results/data/influence/{path.parent.name}/results.json",
                    }
                )
    return out
