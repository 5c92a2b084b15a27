"""The workbench dashboard: ``workbench app`` (or ``streamlit run app/main.py``).

Every page reads the results store (``workbench.paths.results_dir()``: ``$WORKBENCH_RESULTS``, else the project's ``results/``); none re-runs a model
unless you press its button.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parent
if str(APP) not in sys.path:  # `streamlit run` adds it, AppTest does not
    sys.path.insert(0, str(APP))

from workbench_app import data  # noqa: E402

PAGES = [
    ("runs.py", "Runs", ":material/table_rows:"),
    ("head_grids.py", "Head grids", ":material/grid_on:"),
    ("explorer.py", "Attention explorer", ":material/zoom_in:"),
    ("sinks.py", "Sinks", ":material/anchor:"),
    ("retrieval.py", "Retrieval", ":material/search:"),
    ("rhythm.py", "Rhythm", ":material/show_chart:"),
    ("interventions.py", "Interventions", ":material/tune:"),
    ("binding.py", "Binding", ":material/category:"),
    ("compare.py", "Compare", ":material/compare_arrows:"),
]

st.set_page_config(page_title="Attention workbench", page_icon=":material/visibility:", layout="wide")
navigation = st.navigation(
    [
        st.Page(APP / "views" / file, title=title, icon=icon, default=index == 0)
        for index, (file, title, icon) in enumerate(PAGES)
    ]
)
with st.sidebar:
    st.caption(f"store: `{data.store_root()}`")
    try:
        st.caption(f"{len(data.runs())} runs")
    except data.Unavailable as error:
        st.caption(str(error))
navigation.run()
