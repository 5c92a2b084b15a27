"""The demo's pieces: the bundled sample text and the sink / local / long-range / mixed head labels.

The demo job itself is the pipeline ``pipelines/demo.yaml`` (``workbench demo``): its capture step labels
the heads with ``classify_heads``.
"""

from __future__ import annotations

import importlib.resources


def sample_text() -> str:
    return importlib.resources.files("workbench.data").joinpath("sample.txt").read_text()


def classify_heads(
    table, sink_threshold: float = 0.5, local_threshold: float = 0.5, far_quantile: float = 0.9
):
    """Label heads: ``sink`` (mean first-token mass above threshold), ``local`` (mass within the local
    window above threshold), ``long-range`` (top decile of mean backward distance among the rest)."""
    labels = {}
    rest = table[(table.sink_mass <= sink_threshold) & (table.local_mass <= local_threshold)]
    far_cut = rest.mean_distance.quantile(far_quantile) if len(rest) else float("inf")
    for row in table.itertuples():
        if row.sink_mass > sink_threshold:
            labels[(row.layer, row.head)] = "sink"
        elif row.local_mass > local_threshold:
            labels[(row.layer, row.head)] = "local"
        elif row.mean_distance >= far_cut:
            labels[(row.layer, row.head)] = "long-range"
        else:
            labels[(row.layer, row.head)] = "mixed"
    return labels
