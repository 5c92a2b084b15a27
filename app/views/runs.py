"""Runs: every run in the store, filtered by model and method, with what each one holds."""

from __future__ import annotations

import streamlit as st
from workbench_app import data, ui

SUMMARY_LIST_LIMIT = 20


def _short(value):
    """Summary values as the page shows them: long lists cut, so a 128k-token list is not shipped."""
    if isinstance(value, list) and len(value) > SUMMARY_LIST_LIMIT:
        return value[:SUMMARY_LIST_LIMIT] + [f"... {len(value) - SUMMARY_LIST_LIMIT} more"]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


def _selected_rows(event) -> list[int]:
    try:
        return list(event["selection"]["rows"]) if event else []
    except (KeyError, TypeError):
        return []


def render() -> None:
    st.title("Runs")
    internal = st.toggle("show internal runs (sweep and Ray job shards)", value=False, key="runs_internal")
    table = data.runs(internal=internal)
    if table.empty:
        st.info(
            f"The store at `{data.store_root()}` has no runs yet. Run `make demo` (or `workbench demo`) "
            "to fill it, then reload this page.",
            icon=":material/info:",
        )
        return
    left, right = st.columns(2)
    models = left.multiselect("model", sorted(table["model"].unique()), key="runs_models")
    kinds = right.multiselect("method", sorted(table["kind"].unique()), key="runs_kinds")
    shown = table
    if models:
        shown = shown[shown["model"].isin(models)]
    if kinds:
        shown = shown[shown["kind"].isin(kinds)]
    shown = shown.reset_index(drop=True)
    rows = _selected_rows(st.session_state.get("runs_table"))
    if rows and rows[0] < len(shown) and st.session_state.get("runs_last_row") != shown["run_id"][rows[0]]:
        st.session_state["runs_last_row"] = st.session_state["runs_run"] = shown["run_id"][rows[0]]
    ui.table(name="runs_table_1", frame=
        shown[["run_id", "kind", "model", *[c for c in ("device", "dtype", "backend") if c in shown], "created", "input_hash"]],
        hide_index=True,
        width="stretch",
        key="runs_table",
        on_select="rerun",
        selection_mode="single-row",
    )
    st.caption(f"{len(shown)} of {len(table)} runs; click a row for its details")
    if shown.empty:
        return
    run_id = ui.pick_run(shown, key="runs_run", label="details of run")
    record = shown[shown["run_id"] == run_id].iloc[0]
    st.subheader(f"{record['kind']} run {run_id}")
    folder = data.run_dir(run_id)
    st.caption(f"model `{record['model']}` · folder `{folder}`")
    heads, arrays = data.head_table_names(run_id), data.array_names(run_id)
    columns = st.columns(3)
    columns[0].metric("head tables", len(heads))
    columns[1].metric("arrays", len(arrays))
    tokens = data.num_tokens(run_id)
    columns[2].metric("tokens", tokens if tokens is not None else "n/a")
    st.markdown(
        "**head tables:** "
        + (", ".join(f"`{n}`" for n in heads) or "none")
        + "  \n**arrays:** "
        + (", ".join(f"`{n}` ({data.array_rows(run_id, n):,} rows)" for n in arrays) or "none")
    )
    tabs = st.tabs(["summary", "params", "capture spec", "files"])
    with tabs[0]:
        info = {k: v for k, v in data.summary(run_id).items() if k != "tokens"}
        st.json(_short(info), expanded=1)
    with tabs[1]:
        st.json(data.parse_json(record["params"]), expanded=1)
    with tabs[2]:
        st.json(data.parse_json(record["spec"]), expanded=1)
    with tabs[3]:
        ui.table(name="runs_table_2", frame=data.file_sizes(run_id), hide_index=True)
    if heads:
        st.page_link("views/head_grids.py", label="Open its head grid", icon=":material/grid_on:")
    if "pooled" in arrays:
        st.page_link("views/explorer.py", label="Open its attention maps", icon=":material/zoom_in:")


ui.run_page(render)
