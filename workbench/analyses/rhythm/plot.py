"""The rhythm figure: WAAD as a sawtooth line and FAI as bars along the response, with preplan and
anchor tokens marked. Takes the token table (``tokens.parquet``), so notebooks and the dashboard can
draw any problem of a finished run without the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

_LABEL_LIMIT = 120  # token strings as tick labels up to this many tokens; hover text always


def rhythm_figure(tokens: pd.DataFrame, problem: str | None = None, title: str | None = None) -> go.Figure:
    """Figure of one response (``problem``; default the first) from a token table."""
    if tokens.empty:
        raise ValueError("the token table is empty")
    problem = problem if problem is not None else tokens["problem"].iloc[0]
    rows = tokens[tokens["problem"] == problem].sort_values("position")
    if rows.empty:
        known = ", ".join(map(str, tokens["problem"].unique()[:10]))
        raise ValueError(f"problem {problem!r} is not in the token table; known: {known}")
    x = rows["position"].to_numpy()
    labels = [repr(t)[1:-1] for t in rows["token"]]
    hover = [
        f"{p}: {label!s}<br>WAAD {w:.2f}, FAI {f:.4f}<br>credit local/global/coupled {a:.2f}/{b:.2f}/{c:.2f}"
        for p, label, w, f, a, b, c in zip(
            x,
            labels,
            rows["waad"],
            rows["fai"].fillna(np.nan),
            rows["credit_local"],
            rows["credit_global"],
            rows["credit_coupled"],
            strict=True,
        )
    ]
    anchors = rows["is_anchor"].to_numpy(bool)
    preplan = rows["is_preplan"].to_numpy(bool)
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(
        go.Bar(
            x=x,
            y=rows["fai"],
            name="FAI (global heads)",
            marker_color=np.where(anchors, "#d62728", "#c7c7c7").tolist(),
            hovertext=hover,
            hoverinfo="text",
            opacity=0.8,
        ),
        secondary_y=True,
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=rows["waad"],
            mode="lines",
            name="WAAD (local heads)",
            line={"color": "#1f77b4"},
            hovertext=hover,
            hoverinfo="text",
        ),
        secondary_y=False,
    )
    figure.add_trace(
        go.Scatter(
            x=x[preplan],
            y=rows["waad"].to_numpy()[preplan],
            mode="markers",
            name="preplan (top |ΔWAAD|)",
            marker={"symbol": "triangle-up", "size": 8, "color": "#1f77b4"},
            hoverinfo="skip",
        ),
        secondary_y=False,
    )
    figure.add_trace(
        go.Bar(x=[None], y=[None], name="anchor (top FAI)", marker_color="#d62728"), secondary_y=True
    )
    figure.update_layout(
        title=title or f"Preplan-and-anchor rhythm: {problem}",
        bargap=0.1,
        height=420,
        legend={"orientation": "h", "y": -0.25},
        hovermode="closest",
    )
    if len(x) <= _LABEL_LIMIT:
        figure.update_xaxes(
            tickmode="array", tickvals=x, ticktext=labels, tickangle=-60, tickfont={"size": 9}
        )
    else:
        figure.update_xaxes(title_text="response position")
    figure.update_yaxes(title_text="WAAD", secondary_y=False)
    figure.update_yaxes(title_text="FAI", secondary_y=True)
    return figure
