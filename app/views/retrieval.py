"""Retrieval: NIAH success over context length x needle depth, and the head-masking table."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from workbench_app import data, figures, ui

KINDS = ("retrieval-heads", "niah-eval", "retrieval-validate")
GRID_COLUMNS = {"length", "depth"}


def niah_section(runs: pd.DataFrame) -> None:
    with_grid = data.runs_where(
        runs, lambda r: data.has_array(r, "runs") and GRID_COLUMNS <= set(data.array_columns(r, "runs"))
    )
    if with_grid.empty:
        return
    st.subheader("Needle in a haystack: length x depth")
    run_id = ui.pick_run(with_grid, key="retrieval_niah_run")
    table = data.array(run_id, "runs")
    values = [c for c in ("success", "rouge_recall") if c in table.columns]
    if not values or table.empty:
        st.warning(f"run {run_id}'s NIAH table has no success or rouge_recall column.")
        return
    left, right = st.columns(2)
    value = left.radio("value", values, horizontal=True, key="retrieval_value")
    if "condition" in table.columns:
        conditions = list(dict.fromkeys(table["condition"].astype(str)))
        condition = right.selectbox("condition", conditions, key="retrieval_condition")
        table = table[table["condition"].astype(str) == condition]
    else:
        mask = data.parse_json(runs[runs["run_id"] == run_id].iloc[0]["params"]).get("mask") or {}
        right.caption(
            f"mask: {mask.get('kind', 'none')}"
            + (f", heads {mask.get('heads')}" if mask.get("heads") else "")
        )
    frame = table.assign(success=table["success"].astype(float)) if "success" in table else table
    ui.chart(
        figures.grid_heatmap(
            frame, "length", "depth", value, f"mean {value} by context length and needle depth"
        ),
        key="retrieval_niah_chart",
        width="stretch",
    )
    st.caption(f"{len(table)} NIAH runs; success = ROUGE-1 recall of the answer > 0.5")
    with st.expander("answers"):
        shown = [
            c for c in ("needle", "length", "depth", "response", "rouge_recall", "success") if c in table
        ]
        ui.table(name="retrieval_table_1", frame=table[shown], hide_index=True, width="stretch")


def masking_section(runs: pd.DataFrame) -> None:
    st.subheader("Masking table")
    validate = runs[runs["kind"] == "retrieval-validate"]
    shown_any = False
    if not validate.empty:
        run_id = ui.pick_run(
            validate.reset_index(drop=True), key="retrieval_validate_run", label="causal-check run"
        )
        if data.has_array(run_id, "causal"):
            causal = data.array(run_id, "causal")
            ui.table(name="retrieval_table_2", frame=causal, hide_index=True, width="stretch")
            shown_any = True
        if data.has_array(run_id, "summary"):
            st.markdown("**Drop in success, top-K heads masked vs K random heads**")
            ui.table(name="retrieval_table_3", frame=data.array(run_id, "summary"), hide_index=True, width="stretch")
    evals = runs[runs["kind"] == "niah-eval"]
    if not evals.empty:
        rows = []
        for _, row in evals.iterrows():
            mask = data.parse_json(row["params"]).get("mask") or {}
            info = data.summary(row["run_id"])
            rows.append(
                {
                    "run": row["run_id"],
                    "mask": mask.get("kind", "none"),
                    "heads masked": len(mask.get("heads") or []),
                    "mode": mask.get("mode"),
                    "scope": mask.get("scope"),
                    "seed": mask.get("seed"),
                    "success_rate": info.get("success_rate"),
                    "mean_rouge_recall": info.get("mean_rouge_recall"),
                    "runs": info.get("num_runs"),
                }
            )
        st.markdown("**`workbench eval niah` runs**")
        ui.table(name="retrieval_table_4", frame=pd.DataFrame(rows), hide_index=True, width="stretch")
        shown_any = True
    if not shown_any:
        st.caption(
            "No masking runs yet: `workbench validate retrieval MODEL` (top-K vs random-K) or "
            "`workbench eval niah MODEL --mask-heads HEADS.json --top K --out RESULT.json`."
        )


def heads_section(runs: pd.DataFrame) -> None:
    detect = data.runs_where(runs, data.has_head_tables)  # detection runs (command or pipeline step)
    if detect.empty:
        return
    st.subheader("Retrieval heads")
    run_id = ui.pick_run(detect, key="retrieval_heads_run", label="detection run")
    table = data.head_table(run_id)
    info = data.summary(run_id)
    columns = st.columns(2)
    columns[0].metric(
        "retrieval heads (score > threshold)",
        f"{info.get('retrieval_heads', '?')} / {info.get('heads', len(table))}",
    )
    columns[1].metric(
        "successful detection runs", f"{info.get('successful_runs', '?')} / {info.get('total_runs', '?')}"
    )
    ui.table(name="retrieval_table_5", frame=table.head(20), hide_index=True, width="stretch")
    st.page_link("views/head_grids.py", label="All heads on the head grid", icon=":material/grid_on:")


def render() -> None:
    st.title("Retrieval")
    runs = data.runs_of_kind(KINDS, steps=("retrieval",))
    if runs.empty:
        ui.no_runs("retrieval")
        return
    niah_section(runs)
    masking_section(runs)
    heads_section(runs)


ui.run_page(render)
