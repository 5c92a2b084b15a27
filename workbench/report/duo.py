"""DuoAttention tables and findings from ``data/duo/<run>/results.json`` (benchmarks/duo_gpu.py).

A results file holds the gate optimisation (loss curve, plateau checks, the 90 gates) and the deployment
check: per condition (full, gate-top / random splits per ratio, all streaming) the per-run NIAH rows of
the same held-out prompts. Gate-top vs random is paired per prompt: the random splits' success is
averaged over their seeds for each prompt, and the interval is a bootstrap over prompts.

Verdict rule (fixed before any run): the paper's claim is relative (learned gates beat a random split at
equal sparsity), so ``reproduced`` when the 95% interval of success(gate-top) - mean success(random) lies
above 0, ``not reproduced`` when it lies at or below 0, else ``inconclusive``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from workbench.report.files import no_results, result_files
from workbench.report.stats import bootstrap_ci, paired_test, verdict_above_zero

DETECTION = "retrieval/detection-heads-cpu.json"
CURVE_WINDOW = 100  # steps per row of the loss-curve table




def _key(run: dict) -> tuple:
    return (run["needle"], run["length"], run["depth"])


def _per_prompt(conditions: list[dict], name: str, ratio: float) -> dict[tuple, float]:
    """prompt -> success, averaged over the seeds of condition ``name`` at ``ratio``."""
    values: dict[tuple, list[float]] = {}
    for condition in conditions:
        if condition["condition"] == name and abs(condition["ratio"] - ratio) < 1e-9:
            for run in condition["runs"]:
                values.setdefault(_key(run), []).append(float(run["success"]))
    return {k: sum(v) / len(v) for k, v in values.items()}


def _seeds(conditions: list[dict], name: str, ratio: float) -> list[dict]:
    return [c for c in conditions if c["condition"] == name and abs(c["ratio"] - ratio) < 1e-9]


def _rate(values: dict) -> str:
    data = list(values.values())
    low, high = bootstrap_ci(data)
    return f"{np.mean(data):.3f} [{low:.3f}, {high:.3f}]"


def _header(path: Path, result: dict) -> str:
    state = "complete" if result.get("finished") else "**partial (the run stopped early)**"
    return f"`{path.parent.name}`: {result.get('device', '?')}, {state}"


def training_table(data: Path) -> str:
    files = result_files(data, "duo")
    if not files:
        return no_results("bash benchmarks/gpu_calls.sh duo", "duo")
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        train = result.get("train")
        lines = [_header(path, result), ""]
        if not train:
            lines.append("The gate optimisation did not finish (no `train` entry).")
            parts.append("\n".join(lines) + "\n")
            continue
        params, history = train["params"], train["history"]
        gates = np.array([g["gate"] for g in train["gates"]])
        checks = train["plateau_checks"]
        last = checks[-1] if checks else None
        lines += [
            "| steps done / schedule | stopped by | samples per step | lengths | last plateau check: loss change, max gate change | seconds |",
            "|---|---|---|---|---|---|",
            f"| {params['steps_done']} / {params.get('schedule_steps', params['steps'])} | **{params['stopped']}** | {params['batch']} "
            f"| {params['length']} | "
            + (
                f"{last['relative_change']:.4f} (< {params['plateau']['tolerance']}?), "
                f"{last['max_gate_change']:.3f} (< {params['plateau']['gate_tolerance']}?)"
                if last
                else "none"
            )
            + f" | {train['seconds']} |",
            "",
            "| steps | mean loss | mean distillation | mean gate |",
            "|---|---|---|---|",
        ]
        for start in range(0, len(history), CURVE_WINDOW):
            window = history[start : start + CURVE_WINDOW]
            lines.append(
                f"| {window[0]['step']}-{window[-1]['step']} | {np.mean([h['loss'] for h in window]):.5f} "
                f"| {np.mean([h['distill'] for h in window]):.5f} | {np.mean([h['l1'] for h in window]):.3f} |"
            )
        lines += [
            "",
            "| gates < 0.1 | 0.1-0.9 | > 0.9 | min | median | max |",
            "|---|---|---|---|---|---|",
            f"| {(gates < 0.1).sum()} | {((gates >= 0.1) & (gates <= 0.9)).sum()} | {(gates > 0.9).sum()} "
            f"| {gates.min():.3f} | {np.median(gates):.3f} | {gates.max():.3f} |",
        ]
        correlation = _retrieval_correlation(data, train["gates"])
        if correlation is not None:
            lines += [
                "",
                f"Spearman(gate, retrieval score pooled per KV head by max) over {correlation[1]} KV heads: "
                f"{correlation[0]:.2f} (retrieval scores: `{DETECTION}`).",
            ]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _retrieval_correlation(data: Path, gates: list[dict]) -> tuple[float, int] | None:
    path = data / DETECTION
    if not path.exists():
        return None
    pooled: dict[tuple, float] = {}
    for head in json.loads(path.read_text())["heads"]:
        key = (head["layer"], head["kv_head"])
        pooled[key] = max(pooled.get(key, 0.0), float(head["score"]))
    pairs = [
        (g["gate"], pooled[(g["layer"], g["kv_head"])]) for g in gates if (g["layer"], g["kv_head"]) in pooled
    ]
    if len(pairs) < 3:
        return None
    import pandas as pd

    ranks = pd.DataFrame(pairs).rank()
    return float(np.corrcoef(ranks[0], ranks[1])[0, 1]), len(pairs)


def deployment_table(data: Path) -> str:
    files = result_files(data, "duo")
    if not files:
        return no_results("bash benchmarks/gpu_calls.sh duo", "duo")
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        conditions = result.get("conditions") or []
        if not conditions:
            parts.append(_header(path, result) + "\n\nNo deployment condition finished.\n")
            continue
        lines = [
            _header(path, result),
            "",
            "| condition | KV heads full | seeds | runs | NIAH success [95% CI] | gate-top - random (paired, p) |",
            "|---|---|---|---|---|---|",
        ]
        full = _per_prompt(conditions, "full", 1.0)
        if full:
            lines.append(f"| full attention | all | - | {len(full)} | {_rate(full)} | - |")
        ratios = sorted(
            {c["ratio"] for c in conditions if c["condition"] in ("gate-top", "random")}, reverse=True
        )
        for ratio in ratios:
            top, random = _per_prompt(conditions, "gate-top", ratio), _per_prompt(conditions, "random", ratio)
            if top:
                lines.append(
                    f"| gate-top | {ratio:.0%} | - | {len(top)} | {_rate(top)} | {_versus(top, random)} |"
                )
            if random:
                seeds = _seeds(conditions, "random", ratio)
                spread = [c["success_rate"] for c in seeds]
                lines.append(
                    f"| random split (mean of seeds; per seed {min(spread):.3f}-{max(spread):.3f}) | {ratio:.0%} "
                    f"| {len(seeds)} | {len(random)} | {_rate(random)} | - |"
                )
        streaming = _per_prompt(conditions, "all-streaming", 0.0)
        if streaming:
            lines.append(f"| every head streaming | 0% | - | {len(streaming)} | {_rate(streaming)} | - |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _versus(top: dict, random: dict) -> str:
    common = sorted(set(top) & set(random))
    if not common:
        return "-"
    a, b = [top[k] for k in common], [random[k] for k in common]
    return f"{np.mean(a) - np.mean(b):+.3f} (p = {paired_test(a, b):.3f})"


def findings(data: Path) -> list[dict]:
    out = []
    for path in result_files(data, "duo"):
        result = json.loads(path.read_text())
        conditions = result.get("conditions") or []
        source = f"docs/results/data/duo/{path.parent.name}/results.json"
        model = (result.get("protocol") or {}).get("model", "?")
        for ratio in sorted({c["ratio"] for c in conditions if c["condition"] == "gate-top"}, reverse=True):
            top, random = _per_prompt(conditions, "gate-top", ratio), _per_prompt(conditions, "random", ratio)
            common = sorted(set(top) & set(random))
            if not common:
                continue
            diffs = [top[k] - random[k] for k in common]
            low, high = bootstrap_ci(diffs)
            verdict = verdict_above_zero(low, high)
            seeds = len(_seeds(conditions, "random", ratio))
            train = (result.get("train") or {}).get("params") or {}
            partial = ""
            if not result.get("finished") or train.get("stopped") not in (None, "plateau"):
                partial = (f"; partial run: gates stopped by {train.get('stopped', '?')} at step "
                           f"{train.get('steps_done', '?')} of {train.get('schedule_steps', '?')}")  # fmt: skip
            out.append(
                {
                    "finding": f"DuoAttention: top-gate KV heads kept full beat random splits at {ratio:.0%} full",
                    "paper": "Xiao et al. 2024, DuoAttention",
                    "metric": f"held-out NIAH success(gate-top) - mean over {seeds} random splits, {model}{partial}",
                    "value": round(float(np.mean(diffs)), 4),
                    "ci": [round(low, 4), round(high, 4)],
                    "n": len(diffs),
                    "verdict": verdict,
                    "source": source,
                }
            )
    return out
