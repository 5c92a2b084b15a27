"""Attention explorer: the stored pooled map of one head at any length, and exact tiles on demand."""

from __future__ import annotations

import streamlit as st
from workbench_app import compute, data, figures, ui

MAX_TILE_QUERIES = 64
MAX_TILE_KEYS = 512


def exact_section(
    run_id: str, record, layer: int, head: int, tokens: list[str] | None, total: int, scale: str
) -> None:
    st.subheader("Exact tile")
    if tokens is None:
        st.info("This run stores no tokens, so its input cannot be rebuilt for an exact tile.")
        return
    columns = st.columns(3)
    count = columns[1].number_input(
        "queries", 1, min(MAX_TILE_QUERIES, total), min(32, total), key="tile_count"
    )
    first = columns[0].number_input("first query", 0, total - 1, max(0, total - int(count)), key="tile_first")
    last = min(total, int(first) + int(count))
    width = columns[2].number_input(
        "keys before the last query", 1, min(MAX_TILE_KEYS, total), min(128, total), key="tile_keys"
    )
    queries = list(range(int(first), last))
    keys = list(range(max(0, last - int(width)), last))
    tile_key = (run_id, layer, head, queries[0], queries[-1])
    stored = st.session_state.setdefault("tiles", {})
    st.caption(
        f"queries {queries[0]}–{queries[-1]}, keys {keys[0]}–{keys[-1]}. The button re-runs `{record['model']}` "
        "on the run's input through the seam (exact rows for this head only); nothing runs until you press it."
    )
    if st.button("Recompute exact tile", key="tile_button", icon=":material/calculate:"):
        with st.spinner("running the model ..."):
            stored[tile_key] = compute.exact_rows(
                record["model"], tokens, record["input_hash"], layer, head, queries
            )
    rows = stored.get(tile_key)
    if rows is None:
        return
    tile = rows[:, keys[0] : keys[-1] + 1]
    ui.chart(
        figures.exact_tile(tile, queries, keys, tokens, scale, title=f"exact p, layer {layer} head {head}"),
        key="tile_chart",
        width="stretch",
    )
    shown = rows[:, keys[0] : keys[-1] + 1].sum(-1)
    st.caption(f"probability mass inside the window per query: min {shown.min():.3f}, max {shown.max():.3f}")


def render() -> None:
    st.title("Attention explorer")
    runs = data.runs()
    with_pooled = data.runs_where(runs, lambda r: data.has_array(r, "pooled"))
    if with_pooled.empty:
        st.info(
            "No run in the store has a pooled attention map yet: run `make demo`, or "
            "`workbench capture MODEL --text FILE --out heads.parquet --pooled 128`.",
            icon=":material/info:",
        )
        return
    run_id = ui.pick_run(with_pooled, key="explorer_run")
    record = with_pooled[with_pooled["run_id"] == run_id].iloc[0]
    layers, heads = data.layers_and_heads(run_id)
    columns = st.columns([1, 1, 2])
    layer = columns[0].selectbox("layer", layers, key="explorer_layer")
    head = columns[1].selectbox("head", heads, key="explorer_head")
    scale = columns[2].radio(
        "colour scale",
        figures.SCALES,
        horizontal=True,
        key="explorer_scale",
        help="log: log10 of p; sink-excluded: linear, with the colour range set by every key but the first",
    )
    grid = data.pooled_grid(run_id, layer, head)
    total = data.num_tokens(run_id) or grid.shape[0]
    requested = data.parse_json(record["spec"]).get("pooled_cells")
    cell = data.cell_size(total, grid.shape[0], requested)
    tokens = data.tokens(run_id)
    st.caption(
        f"{total:,} tokens pooled into {grid.shape[0]} x {grid.shape[0]} cells of {cell} tokens "
        "(mean probability per cell; blank cells lie in the future). Hover for the tokens of a cell."
    )
    ui.chart(
        figures.pooled_map(
            grid, cell, tokens, scale, title=f"{record['model']} · layer {layer}, head {head}"
        ),
        key="pooled_chart",
        width="stretch",
    )
    exact_section(run_id, record, layer, head, tokens, total, scale)


ui.run_page(render)
