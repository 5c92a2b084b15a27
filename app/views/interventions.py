"""Interventions: pick a stored intervention, run it against the baseline on a prompt, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st
from workbench_app import compute, data, stored_interventions, ui

DEFAULT_PROMPT = "The lighthouse keeper kept a ledger of every ship that passed. The first ship was called"


def choose(sources) -> tuple[list, str] | None:
    """The chosen interventions and the model they were made for."""
    labels = [s.label for s in sources] + ["paste JSON", "LoFiT folder"]
    choice = st.selectbox("stored intervention", labels, key="iv_source")
    if choice == "LoFiT folder":
        folder = st.text_input("LoFiT folder (lofit.json + lofit.safetensors)", key="iv_lofit")
        if not folder:
            st.caption("Give the --out folder of `workbench lofit train`.")
            return None
        from workbench.analyses.lofit.artifact import LofitArtifact

        try:
            artifact = LofitArtifact.load(Path(folder).expanduser())
        except Exception as error:
            st.error(f"cannot read a LoFiT artifact from {folder}: {error}")
            return None
        return artifact.interventions(), artifact.model
    if choice == "paste JSON":
        text = st.text_area(
            "interventions as JSON (a list, or CAL.json)",
            '[{"kind": "uniform", "layer": 0, "head": 0, "scope": "both"}]',
            key="iv_json",
        )
        from workbench.seam.interventions import interventions_from_json

        runs = data.runs()
        models = sorted(runs["model"].unique()) if not runs.empty else ["smollm2-135m"]
        model = st.selectbox("model", models, key="iv_model")
        try:
            return interventions_from_json(text), model
        except Exception as error:
            st.error(f"these interventions cannot be read: {error}")
            return None
    source = sources[labels.index(choice)]
    if source.table is None:
        return source.interventions(), source.model
    table = data.head_table(source.run_id, source.table)
    metrics = ui.numeric_columns(table)
    columns = st.columns(4)
    metric = columns[0].selectbox(
        "rank heads by", metrics, index=metrics.index("score") if "score" in metrics else 0, key="iv_metric"
    )
    k = columns[1].number_input("K heads", 1, len(table), min(3, len(table)), key="iv_k")
    mode = columns[2].selectbox(
        "mask", ("uniform", "zero"), key="iv_mode", help="uniform attention, or a zero head output"
    )
    scope = columns[3].selectbox("scope", ("both", "prefill", "decode"), key="iv_scope")
    return source.interventions(int(k), mode, scope, metric), source.model


def render() -> None:
    st.title("Interventions")
    sources = stored_interventions.sources()
    if not sources:
        st.info(
            "No stored interventions yet: run `make demo` (its head table gives head masks), "
            "`workbench calibrate act MODEL --out CAL.json` or `workbench eval niah ... --mask-heads`.",
            icon=":material/info:",
        )
    chosen = choose(sources)
    if chosen is None:
        return
    interventions, model = chosen
    st.markdown(f"**{len(interventions)} interventions** for `{model}`")
    with st.expander("as JSON"):
        st.code(json.dumps([i.to_dict() for i in interventions], indent=1)[:20000], language="json")
    prompt = st.text_area("prompt", DEFAULT_PROMPT, key="iv_prompt")
    columns = st.columns(2)
    max_new = columns[0].slider("new tokens", 1, 64, 16, key="iv_new")
    chat = columns[1].checkbox("chat template", False, key="iv_chat")
    run_key = (model, prompt, max_new, chat, json.dumps([i.to_dict() for i in interventions], default=str))
    results = st.session_state.setdefault("iv_results", {})
    if st.button("Run against the baseline", key="iv_run", icon=":material/play_arrow:"):
        if not prompt.strip():
            st.error("the prompt is empty: type at least one token")
            return
        with st.spinner(f"running {model} twice ..."):
            results[run_key] = compute.compare(model, prompt, interventions, int(max_new), chat)
    result = results.get(run_key)
    if result is None:
        st.caption("Nothing runs until you press the button.")
        return
    left, right = st.columns(2)
    left.markdown("**Baseline**")
    left.code(result.baseline_text or "(empty)", language=None, wrap_lines=True)
    right.markdown("**With the intervention**")
    right.code(result.intervened_text or "(empty)", language=None, wrap_lines=True)
    st.markdown("**Metrics**")
    ui.table(name="interventions_table_1", frame=
        pd.DataFrame({"value": [str(v) for v in result.metrics.values()]}, index=list(result.metrics)),
        width="stretch",
    )
    if not result.heads.empty:
        st.markdown("**Attention statistics of the intervened heads** (prompt, queries >= 1)")
        ui.table(name="interventions_table_2", frame=result.heads, hide_index=True, width="stretch")


ui.run_page(render)
