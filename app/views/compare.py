"""Compare: two runs' head tables side by side (two models, checkpoints or prompt sets), as
`workbench compare RUN_A RUN_B` prints them (both call workbench.analyses.compare.compare_runs)."""

from __future__ import annotations

import streamlit as st
from workbench_app import data, figures, ui

from workbench.analyses.compare import CompareError, compare_runs


def render() -> None:
    st.title("Compare runs")
    runs = data.runs_where(data.runs(), data.has_head_tables)
    if len(runs) < 2:
        st.info(
            "Comparing needs two runs with head tables in the store at "
            f"`{data.store_root()}`: e.g. `workbench capture` the same text with two models.",
            icon=":material/info:",
        )
        return
    labels = {row["run_id"]: ui.run_label(row) for _, row in runs.iterrows()}
    ids = list(labels)
    left, right = st.columns(2)
    run_a = left.selectbox("run A", ids, index=0, format_func=labels.get, key="compare_a")
    run_b = right.selectbox("run B", ids, index=1, format_func=labels.get, key="compare_b")
    try:
        result = compare_runs(data._store(data.store_root()), run_a, run_b)
    except CompareError as error:
        st.warning(str(error), icon=":material/warning:")
        return
    st.caption(
        f"head table `{result.a['table']}`: {result.a['model']} ({result.a['kind']}) vs "
        f"{result.b['model']} ({result.b['kind']})"
        + (
            f"; heads only in A: {result.only_in_a}, only in B: {result.only_in_b}"
            if result.only_in_a or result.only_in_b
            else ""
        )
    )
    st.subheader("Per statistic")
    ui.table(result.summary, "compare_summary", hide_index=True, width="stretch", key="compare_summary")
    statistic = st.selectbox("statistic", result.summary["statistic"].tolist(), key="compare_statistic")
    rows = result.heads[result.heads["statistic"] == statistic].drop(columns="statistic")
    ui.chart(figures.heads_heatmap(rows, "difference", title=f"{statistic}: B - A"), key="compare_heatmap")
    st.subheader(f"{statistic} per head")
    ui.table(
        rows.assign(abs_difference=rows["difference"].abs()).sort_values("abs_difference", ascending=False),
        "compare_heads",
        hide_index=True,
        width="stretch",
        key="compare_heads",
    )


ui.run_page(render)
