"""The end-to-end GPU run (issue 16): every model-loading command on CUDA next to its CPU reference, and
the long-context captures next to plain SDPA. Raw file: ``data/gpu/gpu_e2e.json`` (the commands and the
long-context run of ``benchmarks/gpu_calls.sh``, merged by ``python3 benchmarks/e2e.py merge OUT PARTS...``)."""

from __future__ import annotations

import json
from pathlib import Path

SOURCE = "gpu/gpu_e2e.json"


def _load(data: Path) -> dict | None:
    path = data / SOURCE
    return json.loads(path.read_text()) if path.exists() else None


def _num(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _agreement(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return str(value)


def commands_table(data: Path) -> str:
    report = _load(data)
    if report is None:
        return "_no committed GPU run yet (`benchmarks/gpu_calls.sh`)_\n"
    lines = [
        f"GPU: {report.get('gpu')}, {str(report.get('date'))[:10]}.",
        "",
        "| command | device | dtype | backend | status | wall (s) | CPU wall (s) | agreement with CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if report.get("not_run"):
        lines[0] += f" Not run in this file (its call ran out of time): {', '.join(report['not_run'])}."
    for row in report.get("commands", []):
        lines.append(
            f"| {row['command']} | {row.get('device') or ''} | {row.get('dtype') or ''} | {row.get('backend') or ''} "
            f"| {row['status']} | {_num(row.get('wall_s'))} | {_num(row.get('cpu_wall_s'))} "
            f"| {_agreement(row.get('agreement'))} |"
        )
    return "\n".join(lines) + "\n"


def long_context_table(data: Path) -> str:
    report = _load(data)
    rows = (report or {}).get("long_context") or []
    if not rows:
        return "_no committed long-context run yet_\n"
    lines = [
        "| model | tokens | mode | status | time (s) | peak GPU memory (GiB) | backend |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seconds = row.get("capture_s", row.get("forward_s", row.get("wall_s")))
        peak = row.get("peak_gib")
        lines.append(
            f"| {row.get('model')} | {row.get('tokens')} | {row.get('mode')} | {row.get('status')} "
            f"| {_num(seconds, 2)} | {_num(peak, 2)} | {row.get('backend') or ''} |"
        )
    return "\n".join(lines) + "\n"
