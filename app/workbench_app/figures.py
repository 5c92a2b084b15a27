"""Dashboard figures on top of ``workbench.plots``: a clickable head grid, pooled maps with token hover,
exact tiles, NIAH heatmaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.plots import head_heatmap
from workbench_app.ui import token_snippet

SCALES = ("log", "sink-excluded", "linear")


def heads_heatmap(table: pd.DataFrame, metric: str, title: str | None = None) -> go.Figure:
    """``workbench.plots.head_heatmap`` with layer and head as categories (plotly reads "0", "1" as numbers)."""
    figure = head_heatmap(table, metric, title)
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure


def head_grid(table: pd.DataFrame, metric: str, selected: tuple[int, int] | None = None) -> go.Figure:
    """``workbench.plots.head_heatmap`` plus an invisible marker per cell: plotly heatmaps do not report
    clicks to Streamlit (streamlit#8760), markers do, so a click on a cell selects that head."""
    figure = head_heatmap(table, metric, title=f"{metric} by layer and head")
    figure.data[0].hoverinfo = "skip"
    figure.data[0].hovertemplate = None
    cells = table.groupby(["layer", "head"], as_index=False)[metric].mean()
    figure.add_trace(
        go.Scatter(
            x=cells["head"].astype(str),
            y=cells["layer"].astype(str),
            mode="markers",
            marker={"symbol": "square", "size": 14, "opacity": 0.0, "color": "white"},
            selected={"marker": {"opacity": 0.0}},
            unselected={"marker": {"opacity": 0.0}},
            customdata=cells[[metric]].to_numpy(),
            hovertemplate="layer %{y}, head %{x}<br>"
            + metric
            + " %{customdata[0]:.4g}<extra>click for details</extra>",
            showlegend=False,
            name="heads",
        )
    )
    if selected is not None:
        figure.add_trace(
            go.Scatter(
                x=[str(selected[1])],
                y=[str(selected[0])],
                mode="markers",
                marker={"symbol": "square-open", "size": 16, "color": "#ff2d55", "line": {"width": 3}},
                hoverinfo="skip",
                showlegend=False,
                name="selected",
            )
        )
    # hoverdistance -1: the nearest cell centre wins, and on a regular grid that is the cell clicked
    figure.update_layout(
        clickmode="event+select",
        dragmode=False,
        hoverdistance=-1,
        margin={"t": 50, "l": 60, "r": 20, "b": 50},
        height=max(360, 24 * cells["layer"].nunique() + 120),  # rows tall enough to click
    )
    figure.update_xaxes(type="category")
    figure.update_yaxes(
        type="category",
        categoryorder="array",
        categoryarray=[str(x) for x in sorted(cells["layer"].unique())],
    )
    return figure


def _colour(values: np.ndarray, scale: str) -> tuple[np.ndarray, dict, str]:
    """z, colour range and colour-bar title for a probability grid (NaN = no data or the future)."""
    if scale == "log":
        z = np.log10(np.clip(values, 1e-9, None))
        z[np.isnan(values)] = np.nan
        return z, {}, "log10 p"
    if scale == "sink-excluded":
        rest = values[:, 1:] if values.shape[1] > 1 else values
        top = np.nanmax(rest) if np.isfinite(rest).any() else 1.0
        return values, {"zmin": 0.0, "zmax": float(top) or 1.0}, "p (key 0 saturates)"
    return values, {}, "p"


def pooled_map(
    grid: np.ndarray, cell: int, tokens: list[str] | None, scale: str = "log", title: str = ""
) -> go.Figure:
    """Query cell x key cell mean probability; each axis label carries the cell's token span and text, so
    hover shows what the cells contain without shipping a string per cell."""
    n = grid.shape[0]
    values = grid.astype(float).copy()
    future = np.triu(np.ones_like(values, dtype=bool), k=1)
    values[future] = np.nan
    z, limits, colour_title = _colour(values, scale)
    labels = []
    for i in range(n):
        start, stop = i * cell, (i + 1) * cell
        if tokens is not None:
            stop = min(stop, len(tokens))
        span = f"{start}" if stop - start <= 1 else f"{start}–{stop - 1}"
        text = token_snippet(tokens, start, stop)
        labels.append(f"{span} {text}".strip() if text else span)
    step = max(1, n // 16)
    ticks = labels[::step]
    tick_text = [label.split(" ", 1)[0] for label in ticks]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            colorscale="Viridis",
            colorbar={"title": colour_title},
            # no per-cell customdata: z alone is 256 x 256 numbers at most, and hover reads it
            hovertemplate="query %{y}<br>key %{x}<br>"
            + ("log10 p %{z:.2f}" if scale == "log" else "p %{z:.3g}")
            + "<extra></extra>",
            hoverongaps=False,
            **limits,
        )
    )
    figure.update_layout(
        title=title,
        height=640,
        margin={"t": 50, "l": 70, "r": 20, "b": 60},
        xaxis={"title": "key position", "tickvals": ticks, "ticktext": tick_text, "type": "category"},
        yaxis={
            "title": "query position",
            "tickvals": ticks,
            "ticktext": tick_text,
            "type": "category",
            "autorange": "reversed",
        },
    )
    return figure


def exact_tile(
    probabilities: np.ndarray,
    queries: list[int],
    keys: list[int],
    tokens: list[str] | None,
    scale: str = "log",
    title: str = "",
) -> go.Figure:
    """Exact probabilities of a window: rows ``queries``, columns ``keys`` (token text on hover)."""
    values = probabilities.astype(float).copy()
    values[np.asarray(keys)[None, :] > np.asarray(queries)[:, None]] = np.nan
    z, limits, colour_title = _colour(values, scale)

    def label(position: int) -> str:
        text = token_snippet(tokens, position, position + 1, limit=16) if tokens else ""
        return f"{position} {text}" if text else str(position)

    x = [label(k) for k in keys]
    y = [label(q) for q in queries]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            customdata=values,
            colorscale="Viridis",
            colorbar={"title": colour_title},
            hovertemplate="query %{y}<br>key %{x}<br>p %{customdata:.4g}<extra></extra>",
            hoverongaps=False,
            **limits,
        )
    )
    step_x, step_y = max(1, len(x) // 24), max(1, len(y) // 24)
    figure.update_layout(
        title=title,
        height=560,
        xaxis={"title": "key", "type": "category", "tickvals": x[::step_x], "ticktext": x[::step_x]},
        yaxis={
            "title": "query",
            "type": "category",
            "autorange": "reversed",
            "tickvals": y[::step_y],
            "ticktext": y[::step_y],
        },
    )
    return figure


def grid_heatmap(
    frame: pd.DataFrame, row: str, column: str, value: str, title: str, colorscale="RdYlGn"
) -> go.Figure:
    """Mean of ``value`` over a (row, column) grid, e.g. NIAH length x depth."""
    grid = frame.pivot_table(index=row, columns=column, values=value, aggfunc="mean").sort_index()
    grid = grid.reindex(sorted(grid.columns), axis=1)
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(dtype=float),
            x=[f"{c:g}" if isinstance(c, (int, float)) else str(c) for c in grid.columns],
            y=[f"{r:g}" if isinstance(r, (int, float)) else str(r) for r in grid.index],
            colorscale=colorscale,
            zmin=0.0,
            zmax=1.0 if frame[value].max() <= 1.0 else None,
            colorbar={"title": value},
            texttemplate="%{z:.2f}",
            hovertemplate=f"{row} %{{y}}<br>{column} %{{x}}<br>{value} %{{z:.3f}}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        xaxis={"title": column, "type": "category"},
        yaxis={"title": row, "type": "category"},
        height=max(320, 24 * len(grid) + 140),
    )
    return figure


def lines_by(
    frame: pd.DataFrame, x: str, y: str, group: str | None, title: str, y_title: str | None = None
) -> go.Figure:
    figure = go.Figure()
    groups = frame.groupby(group) if group else [(y, frame)]
    for name, part in groups:
        part = part.sort_values(x)
        figure.add_trace(go.Scatter(x=part[x], y=part[y], mode="lines+markers", name=str(name)))
    figure.update_layout(title=title, xaxis_title=x, yaxis_title=y_title or y, height=380)
    return figure
