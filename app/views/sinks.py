"""Sinks: Sink_k, first-token mass per head, hidden sinks and massive activations (``workbench heads sinks``)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from workbench_app import data, figures, ui


def sink_k_figure(table: pd.DataFrame) -> go.Figure:
    figure = go.Figure(go.Scatter(x=table["k"], y=table["sink"], mode="lines+markers", name="Sink_k"))
    figure.update_layout(
        title="Sink_k by k",
        xaxis_title="k",
        yaxis_title="Sink_k",
        yaxis_range=[0, 1.05],
        height=340,
    )
    return figure


def capture_fallback() -> None:
    """Without a sinks run, the demo capture's first-token mass still shows where the sinks are."""
    runs = data.runs_where(
        data.runs(), lambda r: data.has_head_tables(r) and "sink_mass" in data.array_columns_of_head_table(r)
    )
    if runs.empty:
        return
    st.subheader("First-token mass from capture runs")
    run_id = ui.pick_run(runs, key="sinks_capture_run")
    table = data.head_table(run_id)
    ui.chart(
        figures.heads_heatmap(table, "sink_mass", "mean attention on the first token"),
        key="sinks_capture_grid",
    )


def render() -> None:
    st.title("Sinks")
    runs = data.runs_of_kind("sinks", steps=("sinks",))
    if runs.empty:
        ui.no_runs("sinks")
        capture_fallback()
        return
    run_id = ui.pick_run(runs, key="sinks_run")
    info = data.summary(run_id)
    arrays = data.array_names(run_id)
    columns = st.columns(3)
    if "sink_1" in info:
        columns[0].metric("Sink_1", f"{info['sink_1']:.3f}")
    params = data.parse_json(runs[runs["run_id"] == run_id].iloc[0]["params"])
    if params:
        columns[1].metric("windows x tokens", f"{params.get('windows', '?')} x {params.get('window', '?')}")
        columns[2].metric("eps", params.get("eps", "?"))
    heads = data.head_table(run_id) if "heads" in data.head_table_names(run_id) else None
    left, right = st.columns(2)
    if heads is not None:
        metric = left.selectbox(
            "head metric",
            ui.numeric_columns(heads),
            key="sinks_metric",
            help="score: mean column mean of the first token; sink_fraction: share of windows above eps",
        )
        ui.chart(where=left, figure=figures.heads_heatmap(heads, metric, f"{metric} per head"), key="sinks_grid")
    if "sink_k" in arrays:
        ui.chart(where=right, figure=sink_k_figure(data.array(run_id, "sink_k")), key="sinks_k")
        right.caption(
            "Sink_k: share of heads whose k keys with the largest column mean include the first token."
        )
    if info.get("sink_dims") is not None:
        right.caption(f"massive-activation dimensions at the first token: {info['sink_dims']}")
    if "hidden_sinks" in arrays:
        hidden = data.array(run_id, "hidden_sinks")
        st.subheader("Hidden sinks (ACT): later tokens with a column mean above the threshold")
        if hidden.empty:
            st.caption("none flagged")
        else:
            ui.table(name="sinks_table_1", frame=hidden.head(200), hide_index=True, width="stretch")
    if "massive_dims" in arrays:
        dims = data.array(run_id, "massive_dims")
        st.subheader("Massive activations at the first token")
        if dims.empty:
            st.caption("no dimension above the threshold")
        else:
            ui.chart(
                figures.grid_heatmap(
                    dims,
                    "layer",
                    "dim",
                    "mean_abs",
                    "mean |activation| at the first token",
                    colorscale="Viridis",
                ),
                key="sinks_dims",
            )


ui.run_page(render)
