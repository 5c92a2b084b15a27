"""Binding: IsSameObject probe accuracy by layer, and scenes with their same-object maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots
from workbench_app import data, figures, ui

KINDS = ("binding",)
VALUE_COLUMNS = ("accuracy", "auroc", "balanced_accuracy")


def probe_arrays(run_id: str) -> list[str]:
    found = []
    for name in data.array_names(run_id):
        columns = set(data.array_columns(run_id, name))
        if "layer" in columns and columns & set(VALUE_COLUMNS) and "patch" not in columns:
            found.append(name)
    return found


def probe_section(run_id: str) -> None:
    names = probe_arrays(run_id)
    if not names:
        st.caption("This run stores no per-layer probe table.")
        return
    st.subheader("Probe accuracy by layer")
    name = st.selectbox("table", names, key="binding_table") if len(names) > 1 else names[0]
    table = data.array(run_id, name)
    values = [c for c in VALUE_COLUMNS if c in table.columns]
    groups = [
        c
        for c in table.columns
        if c not in values and c != "layer" and not pd.api.types.is_float_dtype(table[c])
    ]
    columns = st.columns(max(2, len(groups) + 1))
    value = columns[0].selectbox("value", values, key="binding_value")
    colour = columns[1].selectbox("one line per", groups, key="binding_colour") if groups else None
    shown = table
    for index, group in enumerate(g for g in groups if g != colour):
        options = sorted(shown[group].astype(str).unique())
        pick = columns[min(index + 2, len(columns) - 1)].selectbox(
            group, options, key=f"binding_filter_{group}"
        )
        shown = shown[shown[group].astype(str) == pick]
    shown = shown.groupby([c for c in ("layer", colour) if c], as_index=False)[value].mean()
    st.plotly_chart(
        figures.lines_by(shown, "layer", value, colour, f"IsSameObject {value} by layer"),
        key="binding_probe_chart",
        width="stretch",
    )


def scene_figure(pixels: pd.DataFrame, maps: pd.DataFrame, query: int, patch_side: int) -> go.Figure:
    height, width = int(pixels["y"].max()) + 1, int(pixels["x"].max()) + 1
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[pixels["y"], pixels["x"]] = pixels[["r", "g", "b"]].to_numpy(dtype=np.uint8)
    per_row = width // patch_side
    grid = np.full((height // patch_side, per_row), np.nan)
    grid[maps["patch"] // per_row, maps["patch"] % per_row] = maps["value"].to_numpy()
    qy, qx = divmod(query, per_row)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("scene (query patch outlined)", "same-object map"))
    figure.add_trace(go.Image(z=image), row=1, col=1)
    figure.add_trace(
        go.Heatmap(
            z=grid,
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            colorbar={"title": "p(same)"},
            hovertemplate="patch row %{y}, col %{x}<br>%{z:.3f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    box = {"type": "rect", "line": {"color": "#ff2d55", "width": 3}}
    figure.add_shape(
        x0=qx * patch_side - 0.5,
        x1=(qx + 1) * patch_side - 0.5,
        y0=qy * patch_side - 0.5,
        y1=(qy + 1) * patch_side - 0.5,
        row=1,
        col=1,
        **box,
    )
    figure.add_shape(x0=qx - 0.5, x1=qx + 0.5, y0=qy - 0.5, y1=qy + 0.5, row=1, col=2, **box)
    figure.update_yaxes(autorange="reversed", row=1, col=2)
    figure.update_yaxes(scaleanchor="x2", row=1, col=2)
    figure.update_layout(height=460, margin={"t": 40})
    return figure


def scenes_section(run_id: str) -> None:
    names = data.array_names(run_id)
    if "scenes" not in names or "same_object" not in names:
        st.caption("This run stores no scenes with same-object maps.")
        return
    st.subheader("Scenes and their same-object maps")
    index = data.array(run_id, "same_object", columns=("scene", "layer", "query_patch"))
    columns = st.columns(3)
    scene = columns[0].selectbox("scene", sorted(index["scene"].unique()), key="binding_scene")
    layers = sorted(index.loc[index["scene"] == scene, "layer"].unique())
    layer = columns[1].selectbox("layer", layers, key="binding_layer")
    queries = sorted(index.loc[(index["scene"] == scene) & (index["layer"] == layer), "query_patch"].unique())
    query = columns[2].selectbox("query patch", queries, key="binding_query")
    pixels = data.array(run_id, "scenes", filters=(("scene", "==", int(scene)),))
    maps = data.array(
        run_id,
        "same_object",
        filters=(("scene", "==", int(scene)), ("layer", "==", int(layer)), ("query_patch", "==", int(query))),
    )
    patch_side = int(data.summary(run_id).get("patch_size", 8))
    st.plotly_chart(
        scene_figure(pixels, maps, int(query), patch_side), key="binding_scene_chart", width="stretch"
    )


def render() -> None:
    st.title("Binding")
    runs = data.runs_of_kind(KINDS)
    if runs.empty:
        ui.no_runs("binding")
        return
    run_id = ui.pick_run(runs, key="binding_run")
    info = data.summary(run_id)
    if info:
        with st.expander("run summary"):
            st.json({k: v for k, v in info.items() if not isinstance(v, list) or len(v) < 50}, expanded=1)
    probe_section(run_id)
    scenes_section(run_id)


ui.run_page(render)
