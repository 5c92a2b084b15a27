"""The demo job: capture attention statistics on the bundled sample text and classify heads.

Writes, under ``out``: ``heads.parquet`` (the per-head table), ``HEADS.json`` (sink heads, local heads,
long-range heads) and ``heads.html`` (plotly heatmaps), and records the run in the store.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from workbench.cli.common import write_json


def sample_text() -> str:
    return importlib.resources.files("workbench.data").joinpath("sample.txt").read_text()


def classify_heads(
    table, sink_threshold: float = 0.5, local_threshold: float = 0.5, far_quantile: float = 0.9
):
    """Label heads: ``sink`` (mean first-token mass above threshold), ``local`` (mass within the local
    window above threshold), ``long-range`` (top decile of mean backward distance among the rest)."""
    labels = {}
    rest = table[(table.sink_mass <= sink_threshold) & (table.local_mass <= local_threshold)]
    far_cut = rest.mean_distance.quantile(far_quantile) if len(rest) else float("inf")
    for row in table.itertuples():
        if row.sink_mass > sink_threshold:
            labels[(row.layer, row.head)] = "sink"
        elif row.local_mass > local_threshold:
            labels[(row.layer, row.head)] = "local"
        elif row.mean_distance >= far_cut:
            labels[(row.layer, row.head)] = "long-range"
        else:
            labels[(row.layer, row.head)] = "mixed"
    return labels


def run_demo(model_name: str, out: Path, echo=print) -> dict:
    from workbench.plots import head_heatmap
    from workbench.runners.hf import load_model
    from workbench.seam.spec import CaptureSpec
    from workbench.store import default_store
    from workbench.store.captures import save_capture

    model = load_model(model_name)
    ids = model.encode(sample_text())
    echo(f"{model}: capturing {ids.shape[-1]} tokens of the sample text")
    spec = CaptureSpec(key_statistics=("received",), pooled_cells=128)
    _, capture = model.run(ids, spec, progress=True)
    table = capture.head_table()
    labels = classify_heads(table)
    table["label"] = [labels[(r.layer, r.head)] for r in table.itertuples()]
    store = default_store()
    run_id = save_capture(store, capture, model=model.name, input_ids=ids, kind="demo", head_table=table)
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "heads.parquet", index=False)
    heads_json = {
        "model": model.name,
        "method": "demo-capture",
        "params": {"text": "workbench/data/sample.txt", "tokens": int(ids.shape[-1])},
        "heads": [
            {"layer": int(r.layer), "head": int(r.head), "score": float(r.sink_mass), "label": r.label}
            for r in table.sort_values("sink_mass", ascending=False).itertuples()
        ],
    }
    write_json(out / "HEADS.json", heads_json)
    figures = [
        head_heatmap(table, metric) for metric in ("sink_mass", "local_mass", "mean_distance", "entropy")
    ]
    html = "\n".join(
        f.to_html(full_html=False, include_plotlyjs="cdn" if i == 0 else False) for i, f in enumerate(figures)
    )
    (out / "heads.html").write_text(f"<html><body><h2>{model.name}: attention heads</h2>{html}</body></html>")
    counts = table["label"].value_counts().to_dict()
    summary = {
        "model": model.name,
        "tokens": int(ids.shape[-1]),
        "run_id": run_id,
        "store": str(store.root),
        "head_counts": counts,
        "top_sink_heads": [
            [int(r.layer), int(r.head), round(float(r.sink_mass), 3)]
            for r in table.nlargest(5, "sink_mass").itertuples()
        ],
        "longest_range_heads": [
            [int(r.layer), int(r.head), round(float(r.mean_distance), 1)]
            for r in table.nlargest(5, "mean_distance").itertuples()
        ],
        "files": [str(out / "heads.parquet"), str(out / "HEADS.json"), str(out / "heads.html")],
    }
    echo(f"results: {out}/ (heads.parquet, HEADS.json, heads.html); store: {store.root} (run {run_id})")
    echo("browse them with `workbench app` (or `make app`)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
