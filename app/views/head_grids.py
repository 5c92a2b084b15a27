"""Head grids: a layer x head heatmap of any stored head table; click a head for its details."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from workbench_app import data, figures, ui

TOP_TOKENS = 15


def _selected_from_chart(key: str) -> tuple[int, int] | None:
    event = st.session_state.get(key)
    if not event:
        return None
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    if not points:
        return None
    point = points[0]
    try:
        return int(point["y"]), int(point["x"])
    except (KeyError, TypeError, ValueError):
        return None


def _readable(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def top_tokens(run_id: str, layer: int, head: int) -> pd.DataFrame | None:
    """The keys this head sends the most attention to (received mass), with their tokens."""
    if "keys" not in data.array_names(run_id) or "received" not in data.array_columns(run_id, "keys"):
        return None
    received = data.array(
        run_id,
        "keys",
        columns=("key", "received"),
        filters=(("layer", "==", layer), ("head", "==", head)),
    )
    if received.empty:
        return None
    total = float(received["received"].sum()) or 1.0
    top = received.nlargest(TOP_TOKENS, "received").copy()
    top["share"] = top["received"] / total
    tokens = data.tokens(run_id)
    if tokens is not None:
        top["token"] = [repr(ui.show_token(tokens[k]))[1:-1] if k < len(tokens) else "" for k in top["key"]]
    return top.rename(columns={"key": "position"}).reset_index(drop=True)


def render() -> None:
    st.title("Head grids")
    runs = data.runs()
    if runs.empty:
        ui.no_runs("demo", "")
        return
    with_tables = data.runs_where(runs, data.has_head_tables)
    if with_tables.empty:
        st.info("No run in the store has a head table yet: run `make demo`.")
        return
    run_id = ui.pick_run(with_tables, key="grid_run")
    names = data.head_table_names(run_id)
    left, right = st.columns(2)
    name = left.selectbox("head table", names, key="grid_table")
    table = data.head_table(run_id, name)
    metrics = ui.numeric_columns(table)
    if table.empty or not {"layer", "head"} <= set(table.columns) or not metrics:
        st.warning(f"head table {name!r} of run {run_id} has no numeric column per (layer, head) to draw.")
        ui.table(name="head_grids_table_1", frame=table)
        return
    default = "score" if "score" in metrics else ("sink_mass" if "sink_mass" in metrics else metrics[0])
    if st.session_state.get("grid_metric") not in metrics:
        st.session_state["grid_metric"] = default
    metric = right.selectbox("metric", metrics, key="grid_metric")

    layers = sorted(int(x) for x in table["layer"].unique())
    heads = sorted(int(x) for x in table["head"].unique())
    chart_key = f"grid_chart_{run_id}_{name}"
    clicked = _selected_from_chart(chart_key)
    if clicked and clicked != st.session_state.get("grid_last_click"):
        st.session_state["grid_last_click"] = clicked
        if clicked[0] in layers and clicked[1] in heads:
            st.session_state["grid_layer"], st.session_state["grid_head"] = clicked
    if st.session_state.get("grid_layer") not in layers or st.session_state.get("grid_head") not in heads:
        best = table.sort_values(metric, ascending=False).iloc[0]
        st.session_state["grid_layer"], st.session_state["grid_head"] = int(best["layer"]), int(best["head"])
    selected = (st.session_state["grid_layer"], st.session_state["grid_head"])

    chart, details = st.columns([3, 2])
    with chart:
        ui.chart(
            figures.head_grid(table, metric, selected),
            key=chart_key,
            on_select="rerun",
            selection_mode="points",
            width="stretch",
        )
        st.caption("Click a cell to pick a head, or choose it below.")
    with details:
        a, b = st.columns(2)
        layer = a.selectbox("layer", layers, key="grid_layer")
        head = b.selectbox("head", heads, key="grid_head")
        st.subheader(f"layer {layer}, head {head}")
        row = table[(table["layer"] == layer) & (table["head"] == head)]
        if row.empty:
            st.info(f"head table {name!r} has no row for layer {layer}, head {head}.")
        else:
            record = row.iloc[0].to_dict()
            rank = int((table[metric] > record[metric]).sum()) + 1
            st.caption(f"{metric} rank {rank} of {len(table)}")
            shown = pd.DataFrame(
                {"value": [_readable(v) for v in record.values()]}, index=list(record.keys())
            )
            ui.table(name="head_grids_table_2", frame=shown, width="stretch", height=35 * (len(shown) + 1) + 3)
        top = top_tokens(run_id, layer, head)
        st.markdown("**Top tokens** (attention received from this head)")
        if top is None:
            st.caption(
                "This run stores no per-key attention (a `keys` array with `received`); capture runs made with "
                "`key_statistics=('received',)` (as `make demo` does) have it."
            )
        else:
            ui.table(name="head_grids_table_3", frame=top, hide_index=True, width="stretch")


ui.run_page(render)
