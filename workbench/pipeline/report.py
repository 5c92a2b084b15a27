"""The pipeline's HTML report: one section per step (summary, figures), plotly figures inline.

Figures get fixed div ids, so the same recorded outputs always render the same file.
"""

from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def selection_figure(universe, selected: pd.DataFrame, title: str) -> go.Figure:
    """Layer x head grid: selected heads coloured by score, the others blank."""
    pairs = [tuple(p) for p in universe]
    layers = sorted({layer for layer, _ in pairs})
    heads = sorted({head for _, head in pairs})
    z = np.full((len(layers), len(heads)), np.nan)
    for row in selected.itertuples():
        if row.layer in layers and row.head in heads:
            z[layers.index(row.layer), heads.index(row.head)] = float(row.score)
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(h) for h in heads],
            y=[str(layer) for layer in layers],
            colorscale="Viridis",
            colorbar={"title": "score"},
            hovertemplate="layer %{y}, head %{x}<br>score %{z:.4f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"{title}: {len(selected)} of {len(pairs)} heads selected",
        xaxis_title="head",
        yaxis_title="layer",
        height=max(300, 18 * len(layers) + 120),
    )
    return figure


def validation_figure(per_prompt: pd.DataFrame, metric: str, title: str) -> go.Figure:
    """Per-prompt metric by condition (points) with the condition mean (bar)."""
    labels = list(dict.fromkeys(per_prompt["label"]))
    means = per_prompt.groupby("label", sort=False)[metric].mean()
    figure = go.Figure(go.Bar(x=labels, y=[means[label] for label in labels], name="mean", opacity=0.6))
    figure.add_trace(
        go.Scatter(
            x=per_prompt["label"],
            y=per_prompt[metric],
            mode="markers",
            name="prompt",
            text=[f"prompt {p}" for p in per_prompt["prompt"]],
        )
    )
    figure.update_layout(title=f"{title}: {metric} by condition", yaxis_title=metric, xaxis_title="condition")
    return figure


LIST_LIMIT = 12  # list items shown in a summary cell before "... N more"


def summary_table(summary: dict) -> str:
    """A step's summary as an HTML table: one row per key; a mapping of mappings (per condition, per
    metric) as a nested table with one row per entry; numbers to 4 significant digits."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(key))}</th><td>{_cell(value)}</td></tr>"
        for key, value in summary.items()
    )
    return f"<table class='summary'>{rows}</table>"


def _cell(value) -> str:
    if isinstance(value, dict):
        if value and all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(k for v in value.values() for k in v))
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
            body = "".join(
                f"<tr><th style='text-align:left'>{html.escape(str(name))}</th>"
                + "".join(f"<td>{_cell(entry.get(c, ''))}</td>" for c in columns)
                + "</tr>"
                for name, entry in value.items()
            )
            return f"<table><tr><th></th>{head}</tr>{body}</table>"
        return summary_table(value) if value else ""
    if isinstance(value, (list, tuple)):
        shown = [_inline(v) for v in value[:LIST_LIMIT]]
        more = f"; ... {len(value) - LIST_LIMIT} more" if len(value) > LIST_LIMIT else ""
        separator = "; " if any(isinstance(v, (list, tuple, dict)) for v in value) else ", "
        return html.escape(separator.join(shown) + more)
    return html.escape(_inline(value))


def _inline(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_inline(v) for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_inline(v)}" for k, v in value.items())
    return str(value)


def render_report(title: str, pipeline_source: str, sections: list[dict], plotlyjs: str = "inline") -> str:
    """``sections``: dicts with id, kind, run_id, summary, figures."""
    include = True if plotlyjs == "inline" else "cdn"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "pre{background:#f4f4f4;padding:.6em;overflow:auto;max-height:24em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<table><tr><th>step</th><th>kind</th><th>run</th></tr>",
    ]
    for section in sections:
        parts.append(
            f"<tr><td><a href='#{html.escape(section['id'])}'>{html.escape(section['id'])}</a></td>"
            f"<td>{html.escape(section['kind'])}</td><td><code>{section['run_id']}</code></td></tr>"
        )
    parts.append("</table>")
    if pipeline_source:
        parts.append(
            f"<details><summary>pipeline file</summary><pre>{html.escape(pipeline_source)}</pre></details>"
        )
    for section in sections:
        parts.append(
            f"<h2 id='{html.escape(section['id'])}'>{html.escape(section['id'])} ({section['kind']})</h2>"
        )
        summary = {k: v for k, v in section["summary"].items() if k != "universe"}
        if summary:
            parts.append(summary_table(summary))
            parts.append(
                "<details><summary>summary as JSON</summary>"
                f"<pre>{html.escape(json.dumps(summary, indent=1, default=str))}</pre></details>"
            )
        for number, figure in enumerate(section["figures"]):
            # a fixed template: the process-wide default changes under Streamlit, and the report must be
            # byte-identical whoever renders it (a resumed run re-renders it)
            figure.update_layout(template="plotly_white")
            parts.append(
                figure.to_html(
                    full_html=False,
                    include_plotlyjs=include,
                    div_id=f"figure-{section['id']}-{number}",
                )
            )
            include = False
    parts.append("</body></html>")
    return "\n".join(parts)
