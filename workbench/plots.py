"""Plotly figures used by notebooks, reports and the dashboard.

``head_heatmap`` (layer x head grid of a head-table column), ``pooled_map`` (a pooled attention map,
optionally labelled with the tokens each cell covers) and ``attention_pattern`` (the exact probability rows
of one head over a short prompt, token-labelled, as CircuitsVis and bertviz draw them). ``notebook_figures``
makes notebooks keep a static copy of every figure (HTML, PNG when kaleido can render) so that they show on
GitHub and in nbconvert.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    from workbench.capture import Capture


def head_heatmap(table: pd.DataFrame, metric: str, title: str | None = None) -> go.Figure:
    """Layer x head heatmap of one column of a head table."""
    grid = table.pivot_table(index="layer", columns="head", values=metric, aggfunc="mean").sort_index()
    figure = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=[str(c) for c in grid.columns],
            y=[str(i) for i in grid.index],
            colorscale="Viridis",
            colorbar={"title": metric},
            hovertemplate="layer %{y}, head %{x}<br>" + metric + " %{z:.4f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title or metric, xaxis_title="head", yaxis_title="layer", height=max(300, 18 * len(grid) + 120)
    )
    return figure


def readable(token: str) -> str:
    """A token as text: byte-level BPE markers shown as a space, a return or a tab."""
    return str(token).replace("Ġ", " ").replace("Ċ", "⏎").replace("ĉ", "⇥").replace("▁", " ")


def token_labels(tokens: list[str]) -> list[str]:
    """Unique axis labels "position token" (plotly merges equal category labels)."""
    return [f"{i} {readable(t)}" for i, t in enumerate(tokens)]


def cell_labels(tokens: list[str], cells: int, limit: int = 24) -> list[str]:
    """One label per pooled cell: its first position and the text of the tokens it covers."""
    size = math.ceil(len(tokens) / cells)
    labels = []
    for cell in range(cells):
        text = "".join(readable(t) for t in tokens[cell * size : (cell + 1) * size])
        text = text if len(text) <= limit else text[: limit - 1] + "…"
        labels.append(f"{cell * size}: {text}")
    return labels


def pooled_map(
    values: np.ndarray,
    title: str = "pooled attention",
    log: bool = True,
    exclude_sink: bool = False,
    tokens: list[str] | None = None,
) -> go.Figure:
    """Heatmap of a pooled attention map (query cell x key cell).

    ``tokens`` (e.g. ``capture.tokens``) labels each cell with its first position and the text it covers.
    """
    z = np.array(values, dtype=float)
    if exclude_sink:
        z[:, 0] = np.nan
    if log:
        z = np.log10(np.clip(z, 1e-8, None))
    heatmap = {"z": z, "colorscale": "Viridis", "colorbar": {"title": "log10 p" if log else "p"}}
    if tokens is not None:
        heatmap["x"] = cell_labels(tokens, z.shape[1])
        heatmap["y"] = cell_labels(tokens, z.shape[0])
        heatmap["hovertemplate"] = "query %{y}<br>key %{x}<br>%{z:.4f}<extra></extra>"
    figure = go.Figure(go.Heatmap(**heatmap))
    figure.update_layout(
        title=title, xaxis_title="key cell", yaxis_title="query cell", yaxis_autorange="reversed"
    )
    return figure


def attention_pattern(
    capture: Capture,
    layer: int,
    head: int,
    *,
    batch: int = 0,
    tokens: list[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """One head's exact attention over a short prompt: query tokens x key tokens, probabilities from the
    capture's exact rows (capture them with ``CaptureSpec(rows=range(T))``, or ``range(-n, 0)`` for the last n).
    """
    if not capture.rows:
        raise ValueError(
            "the capture holds no exact rows: capture them with CaptureSpec(rows=range(T)) for a T-token prompt"
        )
    if layer not in capture.layers or head not in capture.heads:
        raise ValueError(
            f"layer {layer} head {head} was not captured: the capture has layers {capture.layers}, heads {capture.heads}"
        )
    tokens = tokens if tokens is not None else capture.tokens
    positions = sorted(capture.rows)
    layer_index, head_index = capture.layers.index(layer), capture.heads.index(head)
    z = np.stack([capture.rows[p][batch, layer_index, head_index].float().numpy() for p in positions])
    num_keys = z.shape[1]
    labels = (
        token_labels(tokens)
        if tokens is not None and len(tokens) >= num_keys
        else [str(k) for k in range(num_keys)]
    )
    z = np.where(
        np.arange(num_keys)[None, :] <= np.asarray(positions)[:, None], z, np.nan
    )  # above the diagonal
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=labels[:num_keys],
            y=[labels[p] for p in positions],
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": "p"},
            hovertemplate="query %{y}<br>key %{x}<br>p %{z:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title or f"layer {layer} head {head}: attention pattern",
        xaxis_title="key",
        yaxis_title="query",
        yaxis_autorange="reversed",
        xaxis_tickangle=-60,
        height=max(320, 22 * len(positions) + 160),
        width=max(420, 22 * num_keys + 200),
    )
    return figure


def can_write_png() -> str | None:
    """None when plotly can write PNG here (kaleido and a Chrome/Chromium it finds), else why not."""
    try:
        import plotly.io as pio

        pio.to_image(go.Figure(), format="png", width=10, height=10)
    except Exception as error:  # kaleido missing, or no browser for kaleido >= 1
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


def notebook_figures(png: bool | None = None) -> str:
    """Make every figure a notebook shows also carry a static copy, so it renders where JavaScript does
    not run (GitHub) and in nbconvert: HTML (plotly.js from its CDN) always, PNG when ``png`` (default:
    when kaleido can render here; kaleido >= 1 needs Chrome/Chromium). Returns the renderer it set, and
    says which one."""
    import plotly.io as pio

    reason = None
    if png is None:
        reason = can_write_png()
        png = reason is None
    renderer = "plotly_mimetype+notebook_connected" + ("+png" if png else "")
    pio.renderers.default = renderer
    note = "with a PNG copy" if png else f"no PNG copy ({reason or 'turned off'})"
    print(f"plotly figures: interactive + HTML, {note}")
    return renderer
