"""Plotly figures used by notebooks, reports and the dashboard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def head_heatmap(table: pd.DataFrame, metric: str, title: str | None = None) -> go.Figure:
    """Layer x head heatmap of one column of a head table."""
    grid = table.pivot_table(index="layer", columns="head", values=metric, aggfunc="mean").sort_index()
    figure = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=[str(c) for c in grid.columns],
            y=[str(i) for i in grid.index],
            colorscale="Viridis",
            colorbar={"title": metric},
            hovertemplate="layer %{y}, head %{x}<br>" + metric + " %{z:.4f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title or metric, xaxis_title="head", yaxis_title="layer", height=max(300, 18 * len(grid) + 120)
    )
    return figure


def pooled_map(
    values: np.ndarray, title: str = "pooled attention", log: bool = True, exclude_sink: bool = False
) -> go.Figure:
    """Heatmap of a pooled attention map (query cell x key cell)."""
    z = np.array(values, dtype=float)
    if exclude_sink:
        z[:, 0] = np.nan
    if log:
        z = np.log10(np.clip(z, 1e-8, None))
    figure = go.Figure(go.Heatmap(z=z, colorscale="Viridis", colorbar={"title": "log10 p" if log else "p"}))
    figure.update_layout(
        title=title, xaxis_title="key cell", yaxis_title="query cell", yaxis_autorange="reversed"
    )
    return figure
