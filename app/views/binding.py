"""Binding: IsSameObject probe accuracy by layer (``workbench binding``), per-head attention AUROC, and
the test scenes with their same-object maps (the model's attention from a patch, on request)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots
from workbench_app import data, figures, ui

KINDS = ("binding",)
SKIP = ("layer", "n_pairs", "n_same_class", "n_hard")
DEFAULT_VALUE = "same_class_accuracy"


def probe_section(run_id: str) -> None:
    if not data.has_array(run_id, "probes"):
        st.caption("This run stores no probe table.")
        return
    table = data.array(run_id, "probes")
    if table.empty or not {"layer", "probe"} <= set(table.columns):
        st.warning(f"run {run_id}'s probe table has no layer/probe rows.")
        return
    st.subheader("IsSameObject probes by layer")
    values = [c for c in table.columns if c not in SKIP and pd.api.types.is_float_dtype(table[c])]
    left, right = st.columns([1, 2])
    value = left.selectbox(
        "value",
        values,
        index=values.index(DEFAULT_VALUE) if DEFAULT_VALUE in values else 0,
        key="binding_value",
        help="same_class_accuracy: pairs of two objects of the same shape class, the binding-specific test",
    )
    probes = sorted(table["probe"].unique())
    shown = right.multiselect("probes", probes, default=probes, key="binding_probes")
    frame = table[table["probe"].isin(shown)]
    ui.chart(
        figures.lines_by(frame, "layer", value, "probe", f"{value} by layer (layer -1 = raw pixels)"),
        key="binding_probe_chart",
        width="stretch",
    )
    info = data.summary(run_id)
    if info.get("best_layer") is not None:
        st.caption(
            f"best layer {info['best_layer']} (quadratic probe, validation); "
            f"{info.get('test_pairs', '?')} test pairs, {info.get('test_same_class_pairs', '?')} same-class"
        )


def heads_section(run_id: str) -> None:
    if "heads" not in data.head_table_names(run_id):
        return
    table = data.head_table(run_id)
    if table.empty or "binding_auroc" not in table.columns:
        return
    st.subheader("Attention heads: AUROC of attention for same vs different object")
    ui.chart(figures.heads_heatmap(table, "binding_auroc"), key="binding_heads_chart")


@st.cache_resource(show_spinner="loading the vision model ...", max_entries=2)
def vision_model(name: str):
    from workbench.devices import runtime_from_environment
    from workbench.runners.vision import load_vision_model

    try:
        where = runtime_from_environment()  # `workbench app --device/--dtype`, else auto
        return load_vision_model(name, device=where.device, dtype=where.dtype)
    except Exception as error:
        raise data.Unavailable(f"cannot load vision model {name!r}: {error}") from None


@st.cache_data(show_spinner="rendering scenes ...", max_entries=8)
def test_scenes(scene_config: tuple, seed: int, count: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``chunk`` of the run's test scenes, exactly as ``make_scene_set`` renders them."""
    from workbench.analyses.binding.scenes import SceneConfig, make_scenes

    config = SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in dict(scene_config).items()})
    start = chunk * 16
    batch = make_scenes(min(16, count - start), seed * 100003 + chunk, config)
    return batch.images.numpy(), batch.instance.numpy()


def scene_figure(
    image: np.ndarray, same: np.ndarray, attention: np.ndarray | None, query: int, patch: int
) -> go.Figure:
    grid = same.shape[0]
    qy, qx = divmod(query, grid)
    titles = ["scene (query patch outlined)", "same object (ground truth)"]
    if attention is not None:
        titles.append("attention from the query patch")
    figure = make_subplots(rows=1, cols=len(titles), subplot_titles=titles)
    figure.add_trace(
        go.Image(z=(np.transpose(image, (1, 2, 0)) * 255).clip(0, 255).astype(np.uint8)), row=1, col=1
    )
    figure.add_trace(
        go.Heatmap(
            z=same,
            colorscale=[[0, "#cfcfcf"], [1, "#2a9d8f"]],
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="patch row %{y}, col %{x}: %{z}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    if attention is not None:
        figure.add_trace(
            go.Heatmap(
                z=attention,
                colorscale="Viridis",
                colorbar={"title": "p"},
                hovertemplate="patch row %{y}, col %{x}<br>p %{z:.4f}<extra></extra>",
            ),
            row=1,
            col=3,
        )
    box = {"type": "rect", "line": {"color": "#ff2d55", "width": 3}}
    figure.add_shape(
        x0=qx * patch - 0.5,
        x1=(qx + 1) * patch - 0.5,
        y0=qy * patch - 0.5,
        y1=(qy + 1) * patch - 0.5,
        row=1,
        col=1,
        **box,
    )
    for col in range(2, len(titles) + 1):
        figure.add_shape(x0=qx - 0.5, x1=qx + 0.5, y0=qy - 0.5, y1=qy + 0.5, row=1, col=col, **box)
        figure.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", row=1, col=col)
    figure.update_layout(height=420, margin={"t": 40})
    return figure


def scenes_section(run_id: str, record) -> None:
    info = data.summary(run_id)
    params = data.parse_json(record["params"])
    if not isinstance(info.get("scene_config"), dict):
        st.caption("This run records no scene configuration, so its scenes cannot be redrawn.")
        return
    st.subheader("Test scenes and their same-object maps")
    import torch

    from workbench.analyses.binding import TEST_SEED
    from workbench.analyses.binding.scenes import patch_labels

    model = vision_model(record["model"])
    count = max(8, int(params.get("scenes", 120)) // 2)
    columns = st.columns(4)
    scene = columns[0].number_input("test scene", 0, count - 1, 0, key="binding_scene")
    images, instance = test_scenes(
        tuple(sorted(info["scene_config"].items())),
        TEST_SEED + int(params.get("seed", 0)),
        count,
        int(scene) // 16,
    )
    index = int(scene) % 16
    patch = model.patch_size
    labels, _ = patch_labels(torch.from_numpy(instance[index : index + 1]), patch, params.get("purity", 0.8))
    labels = labels[0].numpy()
    grid = int(round(len(labels) ** 0.5))
    query = columns[1].number_input(
        "query patch (row-major)", 0, len(labels) - 1, int(np.argmax(labels > 0)), key="binding_query"
    )
    layers = list(range(model.shape.num_layers))
    layer = columns[2].selectbox(
        "attention layer",
        layers,
        index=min(int(info.get("best_layer") or 0), len(layers) - 1),
        key="binding_layer",
    )
    head = columns[3].selectbox("head", ["mean"] + list(range(model.shape.num_heads)), key="binding_head")
    same = np.where(labels < 0, np.nan, (labels == labels[int(query)]).astype(float)).reshape(grid, grid)
    stored = st.session_state.setdefault("binding_attention", {})
    key = (run_id, int(scene), int(layer))
    if st.button(
        "Compute the model's attention for this scene", key="binding_attend", icon=":material/calculate:"
    ):
        with st.spinner(f"running {model.name} on one scene ..."):
            maps = model.attention_maps(torch.from_numpy(images[index : index + 1]), layers=[int(layer)])
        stored[key] = maps[0, 0].float().numpy()  # (head, T, T), token 0 = CLS
    attention = None
    if key in stored:
        rows = stored[key][:, 1 + int(query), 1:]  # (head, patches)
        attention = (rows.mean(0) if head == "mean" else rows[int(head)]).reshape(grid, grid)
    ui.chart(
        scene_figure(images[index], same, attention, int(query), patch),
        key="binding_scene_chart",
        width="stretch",
    )
    st.caption(
        "Ground truth: green = the query's object, grey = another object or the background, blank = a patch "
        f"no instance covers {int(100 * params.get('purity', 0.8))} % of."
    )
    if attention is not None:
        inside = float(np.nansum(np.where(same == 1, attention, 0)))
        st.caption(
            f"attention mass on the query's own object: {inside:.3f} of {float(attention.sum()):.3f} on patches"
        )
    else:
        st.caption(
            "The attention map runs the model on this one scene; nothing runs until you press the button."
        )


def render() -> None:
    st.title("Binding")
    runs = data.runs_of_kind(KINDS, steps=("binding",))
    if runs.empty:
        ui.no_runs("binding")
        return
    run_id = ui.pick_run(runs, key="binding_run")
    record = runs[runs["run_id"] == run_id].iloc[0]
    probe_section(run_id)
    heads_section(run_id)
    if data.has_array(run_id, "ablation"):
        ablation = data.array(run_id, "ablation")
        if not ablation.empty:
            st.subheader("Binding-subspace ablation")
            ui.table(name="binding_table_1", frame=ablation, hide_index=True, width="stretch")
    scenes_section(run_id, record)


ui.run_page(render)
