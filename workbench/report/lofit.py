"""LoFiT tables and findings from ``data/lofit/<run>/results.json`` (written by benchmarks/lofit_gpu.py).

Each unit of a results file is one (task, fold, seed, condition, K) evaluation with per-item scores.
A seed covers every question once over its two folds; per item the scores are averaged over the seeds
present, and intervals are bootstraps over items, paired tests sign flips of per-item differences.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.report.files import no_results, result_files
from workbench.report.stats import bootstrap_ci, paired_test, verdict_above_zero

CONDITIONS = ("base", "lofit", "random", "all")
METRICS = {"truthfulqa": ("mc1", "mc2"), "clutrr": ("accuracy",)}
LABELS = {
    "base": "base (0-shot)",
    "lofit": "LoFiT heads",
    "random": "random heads",
    "all": "all heads, same budget",
}


def usable(units: list[dict]) -> tuple[list[dict], int]:
    """The units a table may use, and how many it leaves out: all-heads units trained before the lr fix
    (2026-12-07; no ``lr_scale`` recorded) diverged in their first epoch and kept step 0, so they measure
    the base model, not the control."""
    kept = [u for u in units if u["condition"] != "all" or "lr_scale" in u]
    return kept, len(units) - len(kept)


def _per_item(units: list[dict], task: str, condition: str, k: int, metric: str) -> tuple[dict, int]:
    """item id -> mean over seeds; and the number of seeds."""
    values: dict[int, list[float]] = {}
    seeds = set()
    for unit in units:
        if unit["task"] != task or unit["condition"] != condition or unit.get("k", 0) != k:
            continue
        seeds.add(unit.get("seed"))
        for item, value in zip(unit["items"]["id"], unit["items"][metric], strict=True):
            values.setdefault(item, []).append(value)
    return {item: sum(v) / len(v) for item, v in values.items()}, len(seeds)


def _cell(values: dict) -> str:
    if not values:
        return "-"
    data = list(values.values())
    low, high = bootstrap_ci(data)
    return f"{sum(data) / len(data):.3f} [{low:.3f}, {high:.3f}]"


def _versus(a: dict, b: dict) -> str:
    common = sorted(set(a) & set(b))
    if not common or a is b:
        return "-"
    first, second = [a[i] for i in common], [b[i] for i in common]
    diff = sum(first) / len(first) - sum(second) / len(second)
    return f"{diff:+.3f} (p = {paired_test(first, second):.3f})"


def table(data: Path, task: str = "truthfulqa") -> str:
    files = result_files(data, "lofit")
    if not files:
        return no_results("bash benchmarks/gpu_calls.sh lofit", "lofit")
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        units, dropped = usable([u for u in result["units"] if u["task"] == task])
        if not units:
            continue
        metrics = METRICS[task]
        head = ["condition", "K", "params", "seeds", "n"]
        head += [f"{m} [95% CI]" for m in metrics] + [f"{m} vs random (p)" for m in metrics]
        lines = [
            f"`{path.parent.name}`: {result.get('device', '?')}, "
            f"{'complete' if result.get('finished') else '**partial (the run stopped early)**'}",
            "",
            "| " + " | ".join(head) + " |",
            "|---" * len(head) + "|",
        ]
        ks = sorted({u["k"] for u in units if u["condition"] != "base"})
        for condition in CONDITIONS:
            for k in [0] if condition == "base" else ks:
                per_metric = {m: _per_item(units, task, condition, k, m) for m in metrics}
                first = per_metric[metrics[0]][0]
                if not first:
                    continue
                params = next(
                    u["params"] for u in units if u["condition"] == condition and u.get("k", 0) == k
                )
                seeds = per_metric[metrics[0]][1]
                cells = [LABELS[condition], str(k), str(params), str(seeds) if condition != "base" else "-"]
                cells.append(str(len(first)))
                cells += [_cell(per_metric[m][0]) for m in metrics]
                for m in metrics:
                    control = _per_item(units, task, "random", k, m)[0] if condition != "random" else {}
                    cells.append(_versus(per_metric[m][0], control) if k else "-")
                lines.append("| " + " | ".join(cells) + " |")
        if dropped:
            lines += ["", f"Left out: {dropped} all-heads units trained before the learning-rate fix (they diverged "
                      "and kept step 0, i.e. the base model)."]  # fmt: skip
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts) if parts else f"No {task} units in the committed LoFiT results.\n"


CONTROLS = {  # the control each finding compares LoFiT heads with: the finding's wording, the metric's label
    "random": ("LoFiT-selected heads beat random heads at equal K = {k} ({task} {metric})", "random"),
    "all": (
        "LoFiT-selected heads beat all heads with the same parameter budget (K = {k}, {task} {metric})",
        "all heads, same budget",
    ),
}


def findings(data: Path) -> list[dict]:
    out = []
    for path in result_files(data, "lofit"):
        result = json.loads(path.read_text())
        source = f"docs/results/data/lofit/{path.parent.name}/results.json"
        units, _ = usable(result["units"])
        for task, metrics in METRICS.items():
            task_units = [u for u in units if u["task"] == task]
            if not task_units:
                continue
            model = task_units[0].get("model", "?")
            folds = len({u["fold"] for u in task_units})
            for control, (claim, label) in CONTROLS.items():
                for k in sorted({u["k"] for u in task_units if u["condition"] == "lofit"}):
                    for metric in metrics:
                        lofit, seeds = _per_item(units, task, "lofit", k, metric)
                        other, other_seeds = _per_item(units, task, control, k, metric)
                        common = sorted(set(lofit) & set(other))
                        if not common:
                            continue
                        diffs = [lofit[i] - other[i] for i in common]
                        counted = (
                            f"{seeds} seeds" if seeds == other_seeds else f"{seeds} and {other_seeds} seeds"
                        )
                        low, high = bootstrap_ci(diffs)
                        out.append(
                            {
                                "finding": claim.format(k=k, task=task, metric=metric),
                                "paper": "Yin, Ye, Durrett 2024, LoFiT",
                                "metric": f"{metric}(LoFiT) - {metric}({label}), {model}, {counted}, {folds} fold(s)",
                                "value": round(sum(diffs) / len(diffs), 4),
                                "ci": [round(low, 4), round(high, 4)],
                                "n": len(diffs),
                                "verdict": verdict_above_zero(low, high),
                                "source": source,
                            }
                        )
    return out
