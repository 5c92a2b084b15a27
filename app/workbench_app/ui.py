"""Page plumbing shared by every page: error guard, run picker, empty-store messages."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd
import streamlit as st

from workbench_app import data
from workbench_app.data import Unavailable

log = logging.getLogger("workbench.app")

# how each analysis is produced, for the "no runs yet" messages
COMMANDS = {
    "demo": "make demo",
    "capture": "workbench capture MODEL --text FILE --out heads.parquet",
    "sinks": "workbench heads sinks MODEL --text FILE --out SINKS.json",
    "retrieval": "workbench heads retrieval MODEL --out HEADS.json",
    "rhythm": "workbench rhythm MODEL --out results/rhythm",
    "binding": "workbench binding tiny-vit-dino-s0 --out results/binding",
}


def download(item, name: str, where=None) -> None:
    """A download button under a figure (standalone HTML, plotly.js from its CDN) or a table (CSV). Every
    page's charts and tables get theirs through ``chart`` and ``table``."""
    where = where or st
    if isinstance(item, pd.DataFrame):
        payload, suffix, mime, what = (
            item.to_csv(index=not isinstance(item.index, pd.RangeIndex)),
            "csv",
            "text/csv",
            "table",
        )
    else:
        payload, suffix, mime, what = item.to_html(include_plotlyjs="cdn"), "html", "text/html", "figure"
    where.download_button(
        f"Download {what} ({suffix.upper()})",
        payload,
        file_name=f"{name}.{suffix}",
        mime=mime,
        key=f"download_{name}",
        on_click="ignore",
        icon=":material/download:",
    )


def chart(figure, key: str, where=None, **kwargs):
    """``st.plotly_chart`` plus its download button; returns what plotly_chart returns (selections)."""
    event = (where or st).plotly_chart(figure, key=key, **kwargs)
    download(figure, key, where)
    return event


def table(frame: pd.DataFrame, name: str, where=None, **kwargs):
    """``st.dataframe`` plus its download button; returns what dataframe returns (selections)."""
    shown = (where or st).dataframe(frame, **kwargs)
    download(frame, name, where)
    return shown


def run_page(render: Callable[[], None]) -> None:
    """Run a page body; a missing or corrupt run, or any other failure, becomes one clear message."""
    try:
        render()
    except Unavailable as error:
        st.error(str(error), icon=":material/error:")
    except Exception as error:  # never show a traceback to the user; log it for the developer
        log.exception("page failed")
        st.error(
            f"This page could not be drawn: {type(error).__name__}: {error}. The server log has the details.",
            icon=":material/error:",
        )


def no_runs(kind: str, what: str | None = None) -> None:
    command = COMMANDS.get(kind, f"workbench {kind} ...")
    st.info(
        f"No {what or kind} runs yet in the store at `{data.store_root()}`: run `{command}` to make one.",
        icon=":material/info:",
    )


def run_label(row) -> str:
    created = str(row["created"])[:16]
    step = data.step_of(row)
    kind = f"pipeline step {step}" if step else row["kind"]
    return f"{kind} · {row['model']} · {row['run_id']} · {created}"


def pick_run(table: pd.DataFrame, key: str, label: str = "run") -> str | None:
    """A run selectbox; honours ``?run=<id>`` and remembers the choice across pages."""
    if table.empty:
        return None
    ids = table["run_id"].tolist()
    labels = {row["run_id"]: run_label(row) for _, row in table.iterrows()}
    wanted = st.query_params.get("run")
    if wanted:
        matches = [i for i in ids if i.startswith(wanted)]
        if matches:
            st.session_state.setdefault(key, matches[0])
        elif key not in st.session_state:
            everything = data.runs()
            if everything["run_id"].str.startswith(wanted).any():
                st.warning(f"run {wanted} is not a run this page shows; pick one below.")
            else:
                st.error(f"no run {wanted!r} in the store at {data.store_root()}; pick one below.")
    remembered = st.session_state.get("selected_run")
    if key not in st.session_state and remembered in ids:
        st.session_state[key] = remembered
    if st.session_state.get(key) not in ids:
        st.session_state[key] = ids[0]
    run_id = st.selectbox(label, ids, key=key, format_func=lambda i: labels[i])
    st.session_state["selected_run"] = run_id
    return run_id


def numeric_columns(table: pd.DataFrame, skip=("layer", "head", "kv_head")) -> list[str]:
    return [c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c])]


def show_token(token: str) -> str:
    """A token as readable text: byte-level BPE markers shown as spaces/newlines."""
    return str(token).replace("Ġ", " ").replace("Ċ", "\n").replace("ĉ", "\t")


def token_snippet(tokens: list[str] | None, start: int, stop: int, limit: int = 28) -> str:
    if not tokens:
        return ""
    text = "".join(show_token(t) for t in tokens[start:stop])
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"
