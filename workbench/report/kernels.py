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
