"""Rhythm tables and findings from ``data/rhythm/<run>/results.json`` (benchmarks/rhythm_gpu.py).

Verdict rule (fixed before any run), per test (a)-(d) of the spec: ``reproduced`` when the 95% bootstrap
interval of the effect (observed minus its shuffled control) lies above 0 *and* the shuffled-control
p-value is below 0.05; ``not reproduced`` when the interval lies at or below 0; else ``inconclusive``.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.report.files import no_results, result_files

ALPHA = 0.05
TESTS = (
    ("a_local", "(a) local head group is the same heads across responses", "Jaccard minus shuffled"),
    ("a_global", "(a) global head group is the same heads across responses", "Jaccard minus shuffled"),
    ("b", "(b) entropy is higher at WAAD peaks (preplan tokens)", "relative entropy lift"),
    ("c", "(c) FAI peaks follow or coincide with WAAD peaks", "coupling rate minus shuffled"),
    ("d", "(d) swapping a high-FAI token moves the continuation more", "Jaccard(low) - Jaccard(high)"),
)




def _header(path: Path, result: dict) -> str:
    state = "complete" if result.get("finished") else "**partial (the run stopped early)**"
    return f"`{path.parent.name}`: {result.get('device', '?')}, {state}"


def verdict(test: dict) -> str:
    low, high = test["ci"]
    if low > 0 and test["p_value"] < ALPHA:
        return "reproduced"
    if high <= 0:
        return "not reproduced"
    return "inconclusive"


def calibration_table(data: Path) -> str:
    files = result_files(data, "rhythm")
    if not files:
        return no_results("bash benchmarks/gpu_calls.sh rhythm", "rhythm")
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        calibration = result.get("calibration") or {}
        choice = calibration.get("choice") or {}
        lines = [
            _header(path, result),
            "",
            "| level | steps | largest operand | operations | correct / problems | accuracy | 95% Wilson lower bound | chosen |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in calibration.get("levels", []):
            bound = (choice.get("wilson_lower") or {}).get(str(row["level"]))
            lines.append(
                f"| {row['level']} | {row['steps']} | {row['largest_operand']} | {row.get('operations', '')} | {row['correct']} / {row['total']} "
                f"| {row['accuracy']:.3f} | {'-' if bound is None else f'{bound:.3f}'} "
                f"| {'**yes**' if row['level'] == choice.get('level') else ''} |"
            )
        main = result.get("main")
        if choice:
            lines += ["", f"Target met by the rule: **{choice.get('meets_target')}**."]
        if main:
            lines += [
                "",
                "| main run: problems | analysed | correct | accuracy (all problems) | tokens per response | also in calibration |",
                "|---|---|---|---|---|---|",
                f"| {main['problems']} | {main['analysed']} | {main['correct']} | {main['accuracy_all_problems']:.3f} "
                f"| mean {main['response_tokens']['mean']:.1f} (min {main['response_tokens']['min']}, max {main['response_tokens']['max']}) "
                f"| {main['problems_also_in_calibration']} |",
            ]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def tests_table(data: Path) -> str:
    files = result_files(data, "rhythm")
    if not files:
        return no_results("bash benchmarks/gpu_calls.sh rhythm", "rhythm")
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        main = result.get("main")
        if not main:
            parts.append(_header(path, result) + "\n\nThe main run did not finish.\n")
            continue
        lines = [
            _header(path, result),
            "",
            "| test | effect | observed | shuffled control | effect [95% CI] | p (shuffled) | n | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, label, effect in TESTS:
            test = main["tests"].get(key)
            if not test or not test.get("n"):
                lines.append(f"| {label} | {effect} | - | - | - | - | 0 | not run |")
                continue
            observed = test.get("observed", test.get("rate", test["value"]))
            lines.append(
                f"| {label} | {effect} | {observed:.3f} | {test.get('shuffled_mean') or 0:.3f} "
                f"| {test['value']:+.3f} [{test['ci'][0]:+.3f}, {test['ci'][1]:+.3f}] | {test['p_value']:.4f} "
                f"| {test['n']} | **{verdict(test)}** |"
            )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def findings(data: Path) -> list[dict]:
    out = []
    for path in result_files(data, "rhythm"):
        result = json.loads(path.read_text())
        main = result.get("main")
        if not main:
            continue
        model = (result.get("protocol") or {}).get("model", "?")
        for key, label, effect in TESTS:
            test = main["tests"].get(key)
            if not test or not test.get("n"):
                continue
            out.append(
                {
                    "finding": f"Preplan-and-anchor rhythm {label}",
                    "paper": "Li et al. 2025, Attention Illuminates LLM Reasoning",
                    "metric": f"{effect}, {model}, arithmetic level {main['level']} (accuracy {main['accuracy_all_problems']:.2f})",
                    "value": round(test["value"], 4),
                    "ci": [round(test["ci"][0], 4), round(test["ci"][1], 4)],
                    "n": test["n"],
                    "verdict": verdict(test),
                    "source": f"docs/results/data/rhythm/{path.parent.name}/results.json",
                }
            )
    return out
