"""Rhythm: the preplan-and-anchor sawtooth (WAAD line, FAI bars) of each stored response."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from workbench_app import data, ui

REQUIRED = {"problem", "position", "token", "waad", "fai", "is_anchor", "is_preplan"}


def render() -> None:
    st.title("Rhythm")
    runs = data.runs_of_kind("rhythm", steps=("rhythm",))
    if runs.empty:
        ui.no_runs("rhythm")
        return
    run_id = ui.pick_run(runs, key="rhythm_run")
    missing = REQUIRED - set(data.array_columns(run_id, "tokens"))
    if missing:
        raise data.Unavailable(
            f"run {run_id}'s token table lacks {sorted(missing)}; re-run `workbench rhythm`"
        )
    tokens = data.array(run_id, "tokens")
    if tokens.empty:
        st.warning(f"run {run_id} has an empty token table: the model produced no responses to analyse.")
        return
    info = data.summary(run_id)
    problems = list(dict.fromkeys(tokens["problem"].tolist()))
    problem = st.selectbox("response", problems, key="rhythm_problem")
    from workbench.analyses.rhythm.plot import rhythm_figure

    ui.chart(rhythm_figure(tokens, problem), key="rhythm_chart", width="stretch")
    rows = tokens[tokens["problem"] == problem]
    columns = st.columns(4)
    columns[0].metric("response tokens", len(rows))
    columns[1].metric("preplan tokens", int(rows["is_preplan"].sum()))
    columns[2].metric("anchor tokens", int(rows["is_anchor"].sum()))
    accuracy = info.get("accuracy")
    columns[3].metric("accuracy (all responses)", "n/a" if accuracy is None else f"{accuracy:.0%}")
    text = (info.get("responses_text") or {}).get(str(problem))
    if text:
        st.markdown("**Response**")
        st.code(text, language=None, wrap_lines=True)
    entropy = info.get("entropy") or {}
    if entropy:
        st.markdown("**Entropy at preplan / anchor tokens vs all tokens** (with a shuffled baseline)")
        frame = pd.DataFrame(entropy).T
        ui.table(name="rhythm_table_1", frame=frame.select_dtypes("number"), width="stretch")
    coupling = info.get("coupling")
    if coupling:
        st.markdown("**FAI / WAAD peak coupling**")
        ui.table(name="rhythm_table_2", frame=pd.DataFrame(coupling), hide_index=True, width="stretch")
    with st.expander("token table of this response"):
        ui.table(name="rhythm_table_3", frame=rows, hide_index=True, width="stretch")


ui.run_page(render)
