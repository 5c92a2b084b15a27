"""AttentionInfluence table from ``data/influence/SCORES.parquet`` (``workbench influence`` output)."""

from __future__ import annotations

from pathlib import Path

SCORES = "influence/SCORES.parquet"


def table(data: Path) -> str:
    import pandas as pd

    path = data / SCORES
    if not path.exists():
        return "No committed SCORES.parquet yet.\n"
    scores = pd.read_parquet(path)
    lines = [
        "| doc | domain | tokens | L_base | L_masked | AttentionInfluence |",
        "|---|---|---|---|---|---|",
    ]
    for row in scores.itertuples(index=False):
        lines.append(
            f"| {row.doc} | {row.domain} | {row.tokens} | {row.loss_base:.3f} | {row.loss_masked:.3f} "
            f"| {row.influence:.3f} |"
        )
    means = scores.groupby("domain", sort=True).influence.mean()
    summary = ", ".join(f"{domain} {value:.3f}" for domain, value in means.items())
    return "\n".join(lines) + f"\n\nMean AttentionInfluence by domain: {summary}.\n"
