"""The results docs as data: every generated table and ``findings.json`` come from committed raw files.

Layout (``root`` is ``docs/results``)::

    root/data/<topic>/...        raw JSON written by the command that measured it
    root/findings.json           one entry per finding (built from the raw files)
    root/*.md                    hand-written prose; tables between <!-- table:NAME --> and <!-- /table -->
    root/../../README.md         the project README, where it has such markers (its GPU numbers)

``python -m workbench.report docs`` rewrites findings.json and every marked table; ``--check`` only
reports what differs (the test suite runs the check, so a committed doc cannot drift from its data).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from workbench.report import (
    binding,
    calibration,
    duo,
    gpu,
    influence,
    kernels,
    lofit,
    retrieval,
    rhythm,
    sinks,
)
from workbench.report.markers import MarkerError, fill_tables, table_names

FIELDS = ("finding", "paper", "metric", "value", "ci", "n", "verdict", "source")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
DEFAULT_ROOT = Path("docs/results")

FINDING_BUILDERS: tuple[Callable[[Path], list[dict]], ...] = (
    retrieval.findings,
    sinks.findings,
    lofit.findings,
    duo.findings,
    rhythm.findings,
    calibration.findings,
    binding.findings,
    influence.findings,
    influence.mirror_findings,
)


def build_findings(root: Path) -> list[dict]:
    entries = [entry for build in FINDING_BUILDERS for entry in build(root / "data")]
    for entry in entries:
        missing = [name for name in FIELDS if name not in entry]
        if missing or entry["verdict"] not in VERDICTS:
            raise ValueError(f"finding {entry.get('finding')!r}: missing {missing} or bad verdict")
    return entries


def findings_table(entries: list[dict]) -> str:
    lines = [
        "| finding | paper | metric | value | 95% CI | n | verdict | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e['finding']} | {e['paper']} | {e['metric']} | {e['value']:.3f} "
            f"| [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}] | {e['n']} | **{e['verdict']}** | `{e['source']}` |"
        )
    return "\n".join(lines) + "\n"


def tables(root: Path, entries: list[dict]) -> dict[str, Callable[[], str]]:
    data = root / "data"
    return {
        "findings": lambda: findings_table(entries),
        "retrieval-heads": lambda: retrieval.heads_table(data),
        "retrieval-gpu-masks": lambda: retrieval.masks_table(data),
        "retrieval-gpu-detect4k": lambda: retrieval.detect4k_table(data),
        "retrieval-random-draws": lambda: retrieval.random_draws_table(data),
        "sinks-sink-k": lambda: sinks.sink_k_table(data),
        "sinks-per-layer": lambda: sinks.per_layer_table(data),
        "calibration-gpu": lambda: calibration.table(data),
        "binding-tiny-vit": lambda: binding.tiny_vit_table(data),
        "binding-tiny-vit-heads": lambda: binding.tiny_vit_heads(data),
        "binding-tiny-vit-layers": lambda: binding.tiny_vit_layers(data),
        "binding-tiny-vit-ablation": lambda: binding.tiny_vit_ablation(data),
        "influence": lambda: influence.table(data),
        "influence-mirror": lambda: influence.mirror_table(data),
        "kernels-capture": lambda: kernels.capture_table(data),
        "kernels-model": lambda: kernels.model_table(data),
        "kernels-round4": lambda: kernels.targets_table(data),
        "lofit-truthfulqa": lambda: lofit.table(data, "truthfulqa"),
        "lofit-clutrr": lambda: lofit.table(data, "clutrr"),
        "duo-training": lambda: duo.training_table(data),
        "duo-deployment": lambda: duo.deployment_table(data),
        "rhythm-calibration": lambda: rhythm.calibration_table(data),
        "rhythm-tests": lambda: rhythm.tests_table(data),
        "gpu-e2e-commands": lambda: gpu.commands_table(data),
        "gpu-long-context": lambda: gpu.long_context_table(data),
    }


def findings_text(entries: list[dict]) -> str:
    return json.dumps(entries, indent=2, ensure_ascii=False) + "\n"


def render(root: Path = DEFAULT_ROOT) -> dict[Path, str]:
    """Path -> the text it should have: findings.json and every markdown file with table markers."""
    root = Path(root)
    entries = build_findings(root)
    known = tables(root, entries)
    out = {root / "findings.json": findings_text(entries)}
    readme = root.resolve().parent.parent / "README.md"  # the project README's "On a GPU" tables
    for path in [*sorted(root.glob("*.md")), *([readme] if readme.exists() else [])]:
        text = path.read_text(encoding="utf-8")
        for name in table_names(text):
            if name not in known:
                raise MarkerError(f"{path}: unknown table {name!r}; known: {sorted(known)}")
        out[path] = fill_tables(text, lambda name: known[name]())
    return out


def stale(root: Path = DEFAULT_ROOT) -> list[Path]:
    """Files whose committed text differs from what the raw data renders."""
    return [
        path
        for path, text in render(root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def write(root: Path = DEFAULT_ROOT) -> list[Path]:
    changed = []
    for path, text in render(root).items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


__all__ = ["FIELDS", "VERDICTS", "build_findings", "render", "stale", "write"]
