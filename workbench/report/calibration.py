"""ACT / ZeroTuning tables and findings from ``data/calibration/<run>/results.json`` (written by
benchmarks/calibration_gpu.py).

A unit is one (task, fold, method, condition[, seed]) evaluation on the fold's held-out items with
per-item correctness. Per (task, method) the folds are pooled item by item (each item is held out in
exactly one fold); the random-head control is the mean over its seeds per item. Differences are paired
per item: percentile bootstrap intervals over items, sign-flip p-values.

The verdict rule (fixed before any GPU result existed, from spec §3b/§3c "what a reproduction should
show"): a finding is **reproduced** when the 95% interval of the paired difference lies above 0; **not
reproduced** when its upper end is below ``NEGLIGIBLE`` (one accuracy point: the interval excludes every
gain of that size, and the papers report average gains of several points: ACT up to +7.3, ZeroTuning
+2.6 on QA and +11.7 on classification); **inconclusive** otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.report.files import no_results, result_files
from workbench.report.stats import bootstrap_ci, paired_test

NEGLIGIBLE = 0.01
METHODS = {"act": "ACT", "zerotuning": "ZeroTuning"}
PAPERS = {"act": "Yu et al. 2024, ACT", "zerotuning": "Han et al. 2025, ZeroTuning"}
TASKS = {"truthfulqa": "TruthfulQA MC1", "clutrr": "CLUTRR (4-way)", "sentiment": "sentiment (shipped)"}
ALL_LABEL = {"act": "all heads of layers 2..L-2", "zerotuning": "all heads, gamma tuned"}



def verdict(ci: tuple[float, float]) -> str:
    if ci[0] > 0:
        return "reproduced"
    return "not reproduced" if ci[1] < NEGLIGIBLE else "inconclusive"


def per_item(units: list[dict], task: str, method: str, condition: str) -> dict:
    """(fold, item id) -> correctness (mean over seeds for the random control)."""
    values: dict[tuple, list[float]] = {}
    for unit in units:
        if (unit["task"], unit["method"], unit["condition"]) != (task, method, condition):
            continue
        for item, correct in zip(unit["items"]["id"], unit["items"]["correct"], strict=True):
            values.setdefault((unit["fold"], item), []).append(float(correct))
    return {key: sum(v) / len(v) for key, v in values.items()}


def seeds(units: list[dict], task: str, method: str) -> int:
    return len(
        {
            (u["fold"], u["seed"])
            for u in units
            if (u["task"], u["method"], u["condition"]) == (task, method, "random")
        }
    ) // max(1, len({u["fold"] for u in units if (u["task"], u["method"]) == (task, method)}))


def paired(a: dict, b: dict) -> dict | None:
    """Mean of a - b over the items both have, its bootstrap CI and sign-flip p; None if none shared."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = [a[k] - b[k] for k in common]
    low, high = bootstrap_ci(diffs)
    return {
        "value": sum(diffs) / len(diffs),
        "ci": (low, high),
        "n": len(diffs),
        "p": paired_test([a[k] for k in common], [b[k] for k in common]),
    }


def _accuracy(values: dict) -> str:
    if not values:
        return "-"
    data = list(values.values())
    low, high = bootstrap_ci(data)
    return f"{sum(data) / len(data):.3f} [{low:.3f}, {high:.3f}]"


def _diff(result: dict | None) -> str:
    if result is None:
        return "-"
    return f"{result['value']:+.3f} [{result['ci'][0]:+.3f}, {result['ci'][1]:+.3f}] (p = {result['p']:.3f})"


def _pairs(result: dict) -> list[tuple[str, str]]:
    return sorted(
        {(u["task"], u["method"]) for u in result["units"]},
        key=lambda tm: (list(TASKS).index(tm[0]) if tm[0] in TASKS else 99, tm[0], tm[1]),
    )


def _selected(result: dict, task: str, method: str) -> str:
    """Heads selected per fold (their count and, for ZeroTuning, the gammas)."""
    parts = []
    for search in sorted(result.get("searches", []), key=lambda s: s["fold"]):
        if (search["task"], search["method"]) != (task, method):
            continue
        groups = search["selected"]
        count = sum(len(heads) for _, heads in groups)
        gammas = sorted({g for g, _ in groups if g is not None})
        text = f"{count}" + (f" (gamma {', '.join(f'{g:g}' for g in gammas)})" if gammas else "")
        tune = f"tune {search['tune_baseline']:.3f} -> {search['tune_selected']:.3f}"
        parts.append(f"fold {search['fold']}: {text}, {tune}")
    return "; ".join(parts) or "-"


def table(data: Path) -> str:
    files = result_files(data, "calibration")
    if not files:
        return no_results("bash benchmarks/gpu_calls.sh calibration", "calibration")
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        units = result["units"]
        head = [
            "task",
            "method",
            "n tune / search",
            "held-out n",
            "heads selected (per fold)",
            "base acc [95% CI]",
            "selected acc",
            "selected - base [95% CI] (p)",
            "random acc (seeds)",
            "selected - random",
            "all heads acc",
            "selected - all",
        ]
        lines = [
            f"`{path.parent.name}`: {result.get('device', '?')}, "
            f"{'complete' if result.get('finished') else '**partial (the run stopped early)**'}",
            "",
            "| " + " | ".join(head) + " |",
            "|---" * len(head) + "|",
        ]
        for task, method in _pairs(result):
            base, selected = per_item(units, task, method, "base"), per_item(units, task, method, "selected")
            rand, every = per_item(units, task, method, "random"), per_item(units, task, method, "all")
            tune = sorted({u["n_tune"] for u in units if (u["task"], u["method"]) == (task, method)})
            cells = [
                TASKS.get(task, task),
                METHODS.get(method, method),
                "/".join(map(str, tune)),
                str(len(base)),
                _selected(result, task, method),
                _accuracy(base),
                _accuracy(selected),
                _diff(paired(selected, base)),
                f"{_accuracy(rand)} ({seeds(units, task, method)})" if rand else "-",
                _diff(paired(selected, rand)),
                _accuracy(every),
                _diff(paired(selected, every)),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def findings(data: Path) -> list[dict]:
    out = []
    for path in result_files(data, "calibration"):
        result = json.loads(path.read_text())
        source = f"docs/results/data/calibration/{path.parent.name}/results.json"
        units = result["units"]
        state = "" if result.get("finished") else ", partial run"
        for task, method in _pairs(result):
            name, label = METHODS.get(method, method), TASKS.get(task, task)
            model = next(u.get("model", "?") for u in units if (u["task"], u["method"]) == (task, method))
            selected = per_item(units, task, method, "selected")
            comparisons = [
                (
                    "base",
                    f"{name} on the tuned heads raises held-out accuracy over the base model ({label})",
                    "accuracy(selected) - accuracy(base)",
                ),
                (
                    "random",
                    f"{name} on the tuned heads beats as many random heads ({label})",
                    f"accuracy(selected) - accuracy(random heads, mean of {seeds(units, task, method)} draws)",
                ),
            ]
            if method == "act":  # spec §3b: ACT on all heads is worse than on the selected heads
                comparisons.append(
                    (
                        "all",
                        f"ACT on the tuned heads beats ACT on all heads of layers 2..L-2 ({label})",
                        "accuracy(selected) - accuracy(all heads of layers 2..L-2)",
                    )
                )
            for condition, finding, metric in comparisons:
                versus = paired(selected, per_item(units, task, method, condition))
                if versus is None:
                    continue
                out.append(
                    {
                        "finding": finding,
                        "paper": PAPERS.get(method, method),
                        "metric": f"{metric}, held-out items, {model}{state}",
                        "value": round(versus["value"], 4),
                        "ci": [round(versus["ci"][0], 4), round(versus["ci"][1], 4)],
                        "n": versus["n"],
                        "verdict": verdict(versus["ci"]),
                        "source": source,
                    }
                )
    return out
