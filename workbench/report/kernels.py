"""Kernel benchmark tables from ``data/kernels/<run>/`` (``benchmarks/kernel_sweep.py`` output)."""

from __future__ import annotations

import json
from pathlib import Path

RUN = "kernels/gpu-2026-12-02"


def capture_table(data: Path) -> str:
    """Capture (forward + statistics + key pass) vs SDPA, one layer, per context length."""
    rows = json.loads((data / RUN / "attention_stats.json").read_text())
    lines = ["| T | SDPA ms | capture ms | ratio | peak GB | GPU |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['T']} | {row['sdpa_ms']:.2f} | {row['capture_ms']:.2f} | {row['ratio']:.2f} "
            f"| {row['peak_gb']:.2f} | {row['gpu']} ({row['date']}) |"
        )
    return "\n".join(lines) + "\n"


def model_table(data: Path) -> str:
    rows = json.loads((data / RUN / "model_capture.json").read_text())
    lines = [
        "| model | T | layers | plain SDPA ms | capture ms | ratio | peak GB | logits rel. error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['T']} | {row['layers']} | {row['plain_sdpa_ms']:.0f} | {row['capture_ms']:.0f} "
            f"| {row['ratio']:.2f} | {row['peak_gb']:.1f} | {row['logits_rel_error']:.3f} |"
        )
    return "\n".join(lines) + "\n"


ROUND4 = "kernels/gpu-2026-12-07"
PATHS = ("rows_lse", "forward_stats", "capture", "flex_lse")  # the columns, in attention_stats.py's ratio names


def targets_table(data: Path) -> str:
    """Issue 19's table: every path's time over SDPA's in the same process, per length, with FlexAttention
    returning lse beside it (``benchmarks/attention_stats.py --flex``), and the 1B-shaped model at 32k."""
    folder = data / ROUND4
    if not (folder / "attention_stats_detail.json").exists():
        return "_no committed round-4 run yet_\n"
    rows = json.loads((folder / "attention_stats_detail.json").read_text())
    lines = [
        "| T | rows, lse only | all row statistics | full capture | FlexAttention returning lse | SDPA ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratios = row["ratios"]
        cells = [f"{ratios[k]:.2f}" if ratios.get(k) is not None else "failed" for k in PATHS]
        lines.append(f"| {row['T'] // 1024}k | " + " | ".join(cells) + f" | {row['sdpa_ms']:.2f} |")
    model = json.loads((folder / "model_capture.json").read_text())
    notes = "; ".join(f"{m['model']} at {m['T'] // 1024}k: {m['ratio']:.2f}x ({m['gpu']}, {m['date']})" for m in model)
    return "\n".join(lines) + f"\n\nWhole model: {notes}.\n"
