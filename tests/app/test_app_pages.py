"""Every dashboard page under ``streamlit.testing.v1.AppTest`` on a store of tiny-gqa runs: what each
page draws is checked against the stored data (and, for exact tiles, against the stored pooled map)."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from workbench_app.ui import show_token

from workbench.store import Store

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"  # not from conftest: conftest names clash
PAGES = ("runs", "head_grids", "explorer", "sinks", "retrieval", "rhythm", "interventions", "binding", "compare")


def open_page(name: str, query: dict | None = None, timeout: float = 120) -> AppTest:
    at = AppTest.from_file(str(MAIN), default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(f"views/{name}.py")
    return at.run()


def values(field) -> np.ndarray:
    """A figure field as an array: plotly 6 ships numpy data as {"dtype", "bdata", "shape"}."""
    if isinstance(field, dict) and "bdata" in field:
        array = np.frombuffer(base64.b64decode(field["bdata"]), dtype=np.dtype(field["dtype"]))
        shape = field.get("shape")
        if shape:
            array = array.reshape([int(n) for n in str(shape).split(",")])
        return array.astype(float)
    return np.array(field, dtype=float)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [h.value for h in at.subheader]
    return "\n".join(parts)


def widget(at: AppTest, kind: str, key: str):
    return next(w for w in getattr(at, kind) if w.key == key)


def test_runs_page_lists_and_filters_runs(store):
    root, ids = store
    at = open_page("runs")
    assert_clean(at)
    table = at.dataframe[0].value
    assert set(table["run_id"]) == set(Store(root).runs()["run_id"])
    widget(at, "multiselect", "runs_kinds").set_value(["rhythm"]).run()
    assert_clean(at)
    assert at.dataframe[0].value["run_id"].tolist() == [ids["rhythm"]]
    assert f"rhythm run {ids['rhythm']}" in texts(at)


def test_head_grid_draws_the_stored_table_and_head_details(store):
    root, ids = store
    at = open_page("head_grids")
    assert_clean(at)
    widget(at, "selectbox", "grid_run").set_value(ids["demo"]).run()
    widget(at, "selectbox", "grid_metric").set_value("sink_mass").run()
    assert_clean(at)
    spec = charts(at)[0]
    heatmap = spec["data"][0]
    table = Store(root).head_table(ids["demo"])
    expected = table.pivot_table(index="layer", columns="head", values="sink_mass").sort_index()
    np.testing.assert_allclose(values(heatmap["z"]), expected.to_numpy(), rtol=1e-6)
    clickable = spec["data"][1]
    assert len(clickable["x"]) == len(table)  # one clickable marker per head
    widget(at, "selectbox", "grid_layer").set_value(1).run()
    widget(at, "selectbox", "grid_head").set_value(2).run()
    assert_clean(at)
    assert "layer 1, head 2" in texts(at)
    top = at.dataframe[-1].value
    received = Store(root).array(ids["demo"], "keys")
    head = received[(received.layer == 1) & (received["head"] == 2)]
    assert top["position"].tolist()[:5] == head.nlargest(5, "received")["key"].tolist()
    tokens = Store(root).summary(ids["demo"])["tokens"]
    assert top["token"].iloc[0] == repr(show_token(tokens[top["position"].iloc[0]]))[1:-1]


def test_explorer_pooled_map_scales_and_exact_tile(store):
    root, ids = store
    at = open_page("explorer")
    assert_clean(at)
    widget(at, "selectbox", "explorer_run").set_value(ids["demo"]).run()
    widget(at, "selectbox", "explorer_layer").set_value(1).run()
    widget(at, "selectbox", "explorer_head").set_value(3).run()
    pooled = Store(root).array(ids["demo"], "pooled")
    pooled = pooled[(pooled.layer == 1) & (pooled["head"] == 3)]
    cells = int(pooled.query_cell.max()) + 1
    grid = np.full((cells, cells), np.nan)
    grid[pooled.query_cell, pooled.key_cell] = pooled.value
    grid[np.triu_indices(cells, 1)] = np.nan
    heatmap = charts(at)[0]["data"][0]
    z = values(heatmap["z"])
    np.testing.assert_allclose(z, np.log10(np.clip(grid, 1e-9, None)), rtol=1e-6)
    assert heatmap["y"][0].startswith("0–4 ")  # the cell's tokens ride on the axis label (token hover)
    widget(at, "radio", "explorer_scale").set_value("sink-excluded").run()
    heatmap = charts(at)[0]["data"][0]
    np.testing.assert_allclose(values(heatmap["z"]), grid, rtol=1e-6)
    assert heatmap["zmax"] == pytest.approx(np.nanmax(grid[:, 1:]))

    total = len(Store(root).summary(ids["demo"])["tokens"])
    cell = math.ceil(total / cells)
    query_cell = 7
    widget(at, "number_input", "tile_count").set_value(cell).run()
    widget(at, "number_input", "tile_first").set_value(query_cell * cell).run()
    widget(at, "number_input", "tile_keys").set_value(total).run()
    assert len(charts(at)) == 1  # nothing recomputed before the button
    at.button(key="tile_button").click().run()
    assert_clean(at)
    tile = charts(at)[1]["data"][0]
    # (cell queries, keys 0 .. last query): every key these queries can see
    exact = np.nan_to_num(values(tile["customdata"]))
    assert exact.shape == (cell, (query_cell + 1) * cell)
    np.testing.assert_allclose(exact.sum(-1), 1.0, atol=1e-4)
    # the mean of the exact probabilities over each pooled cell is the stored pooled value
    block = exact[:, : (query_cell + 1) * cell].reshape(cell, query_cell + 1, cell).mean(axis=(0, 2))
    stored = (
        pooled[pooled.query_cell == query_cell].sort_values("key_cell")["value"].to_numpy()[: query_cell + 1]
    )
    np.testing.assert_allclose(block, stored, rtol=1e-4, atol=1e-7)


def test_sinks_page_shows_the_sinks_run(store):
    root, ids = store
    at = open_page("sinks")
    assert_clean(at)
    run_id = Store(root).runs(kind="sinks")["run_id"].iloc[0]
    summary = Store(root).summary(run_id)
    assert at.metric[0].value == f"{summary['sink_1']:.3f}"
    spec = charts(at)
    table = Store(root).head_table(run_id)
    grid = table.pivot_table(index="layer", columns="head", values="score").sort_index()
    np.testing.assert_allclose(values(spec[0]["data"][0]["z"]), grid.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(values(spec[1]["data"][0]["y"]), summary["sink_k"], rtol=1e-6)


def test_retrieval_page_heatmap_and_masking_table(store):
    root, _ = store
    runs = Store(root).runs()
    at = open_page("retrieval")
    assert_clean(at)
    run_id = widget(at, "selectbox", "retrieval_niah_run").value
    niah = Store(root).array(run_id, "runs")
    if "condition" in niah:
        niah = niah[niah.condition == widget(at, "selectbox", "retrieval_condition").value]
    expected = niah.assign(success=niah.success.astype(float)).pivot_table(
        index="length", columns="depth", values="success"
    )
    np.testing.assert_allclose(values(charts(at)[0]["data"][0]["z"]), expected.to_numpy())
    validate = runs[runs.kind == "retrieval-validate"]["run_id"].iloc[0]
    causal = Store(root).array(validate, "causal")
    frames = [d.value for d in at.dataframe]
    assert any(list(f.get("condition", [])) == causal["condition"].tolist() for f in frames)
    evals = next(f for f in frames if "mask" in f.columns)
    assert evals["mask"].tolist() == ["top"] and evals["heads masked"].tolist() == [2]


def test_rhythm_page_draws_each_response(store):
    root, ids = store
    tokens = Store(root).array(ids["rhythm"], "tokens")
    at = open_page("rhythm")
    assert_clean(at)
    for problem in tokens["problem"].unique():
        widget(at, "selectbox", "rhythm_problem").set_value(problem).run()
        assert_clean(at)
        rows = tokens[tokens.problem == problem]
        line = next(t for t in charts(at)[0]["data"] if t.get("name", "").startswith("WAAD"))
        np.testing.assert_allclose(
            values(line["y"]), rows.sort_values("position")["waad"].to_numpy(), rtol=1e-6
        )
        assert at.metric[0].value == str(len(rows))


def test_intervention_from_a_head_table_changes_the_masked_heads(store):
    root, ids = store
    at = open_page("interventions")
    assert_clean(at)
    source = widget(at, "selectbox", "iv_source")
    label = next(o for o in source.options if ids["demo"] in o and o.startswith("mask top-K"))
    source.set_value(label).run()
    widget(at, "selectbox", "iv_metric").set_value("sink_mass").run()
    widget(at, "number_input", "iv_k").set_value(2).run()
    widget(at, "slider", "iv_new").set_value(6).run()
    assert "Nothing runs until you press the button." in texts(at)
    at.button(key="iv_run").click().run()
    assert_clean(at)
    metrics = at.dataframe[0].value
    assert float(metrics.loc["KL, mean over prompt tokens", "value"]) > 0
    heads = at.dataframe[1].value
    table = Store(root).head_table(ids["demo"])
    top = table.nlargest(2, "sink_mass")
    assert sorted(zip(heads.layer, heads["head"], strict=True)) == sorted(
        zip(top.layer, top["head"], strict=True)
    )
    # uniform attention over the visible keys has the largest entropy a row can have
    assert (heads["entropy intervened"] > heads["entropy baseline"]).all()
    assert (heads["sink_mass intervened"] < heads["sink_mass baseline"]).all()


def test_stored_calibration_runs_against_the_baseline(store):
    root, ids = store
    at = open_page("interventions")
    source = widget(at, "selectbox", "iv_source")
    label = next(o for o in source.options if ids["calibration"] in o)
    source.set_value(label).run()
    widget(at, "slider", "iv_new").set_value(4).run()
    at.button(key="iv_run").click().run()
    assert_clean(at)
    assert "2 interventions" in texts(at)
    assert sorted(zip(at.dataframe[1].value.layer, at.dataframe[1].value["head"], strict=True)) == [
        (0, 1),
        (1, 2),
    ]


def test_lofit_folder_runs_against_the_baseline(store, tmp_path):
    import torch

    from workbench.analyses.lofit.artifact import LofitArtifact

    shape = {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16}
    offsets = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)) * 5
    LofitArtifact("tiny-gqa", "fixture", [(0, 1), (1, 3)], offsets, shape).save(tmp_path / "lofit")
    at = open_page("interventions")
    widget(at, "selectbox", "iv_source").set_value("LoFiT folder").run()
    widget(at, "text_input", "iv_lofit").set_value(str(tmp_path / "lofit")).run()
    widget(at, "slider", "iv_new").set_value(4).run()
    at.button(key="iv_run").click().run()
    assert_clean(at)
    assert "2 interventions" in texts(at)
    assert float(at.dataframe[0].value.loc["KL, mean over prompt tokens", "value"]) > 0
    widget(at, "text_input", "iv_lofit").set_value(str(tmp_path / "nowhere")).run()
    assert_clean(at)
    assert any("cannot read a LoFiT artifact" in e.value for e in at.error)


def test_binding_page_draws_probes_heads_and_scenes(store):
    from workbench.analyses.binding import TEST_SEED
    from workbench.analyses.binding.scenes import SceneConfig, make_scene_set, patch_labels

    root, ids = store
    at = open_page("binding")
    assert_clean(at)
    probes = Store(root).array(ids["binding"], "probes")
    lines = {trace["name"]: trace for trace in charts(at)[0]["data"]}
    assert set(lines) == set(probes["probe"])
    quadratic = probes[probes.probe == "quadratic"].sort_values("layer")
    np.testing.assert_allclose(values(lines["quadratic"]["y"]), quadratic["same_class_accuracy"])
    heads = Store(root).head_table(ids["binding"])
    grid = heads.pivot_table(index="layer", columns="head", values="binding_auroc").sort_index()
    np.testing.assert_allclose(values(charts(at)[1]["data"][0]["z"]), grid.to_numpy(), rtol=1e-6)

    widget(at, "number_input", "binding_scene").set_value(3).run()
    widget(at, "number_input", "binding_query").set_value(10).run()
    assert_clean(at)
    scene = charts(at)[2]["data"]
    assert [trace["type"] for trace in scene] == ["image", "heatmap"]  # no model run yet
    summary, params = (
        Store(root).summary(ids["binding"]),
        json.loads(Store(root).run(ids["binding"])["params"]),
    )
    config = SceneConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in summary["scene_config"].items()}
    )
    scenes = make_scene_set(max(8, params["scenes"] // 2), TEST_SEED + params["seed"], config)
    labels = patch_labels(scenes.instance[3:4], 8, params["purity"])[0][0].numpy()
    expected = np.where(labels < 0, np.nan, labels == labels[10]).reshape(8, 8)
    np.testing.assert_array_equal(values(scene[1]["z"]), expected)

    at.button(key="binding_attend").click().run()
    assert_clean(at)
    attention = values(charts(at)[2]["data"][2]["z"])
    assert attention.shape == (8, 8) and 0 < attention.sum() <= 1 + 1e-5


@pytest.mark.parametrize("name", PAGES)
def test_every_page_explains_an_empty_store(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "empty"))
    at = open_page(name)
    assert_clean(at)
    assert not at.error
    assert at.info and ("make demo" in at.info[0].value or "workbench" in at.info[0].value)


def test_missing_run_folder_is_a_message(broken_store):
    import shutil

    root, ids = broken_store
    shutil.rmtree(root / "runs" / ids["demo"])
    at = open_page("runs")
    widget(at, "selectbox", "runs_run").set_value(ids["demo"]).run()
    assert_clean(at)
    assert any("is missing" in e.value for e in at.error)
    for name in ("head_grids", "explorer", "interventions"):
        at = open_page(name)
        assert_clean(at)


@pytest.mark.parametrize(
    "damage, page, key",
    [
        ("pooled.parquet", "explorer", "explorer_run"),
        ("heads-heads.parquet", "head_grids", "grid_run"),
        ("summary.json", "runs", "runs_run"),
    ],
)
def test_corrupt_run_is_a_message(broken_store, damage, page, key):
    root, ids = broken_store
    (root / "runs" / ids["demo"] / damage).write_bytes(b"not what it should be")
    at = open_page(page)
    widget(at, "selectbox", key).set_value(ids["demo"]).run()
    assert_clean(at)
    assert any("corrupt" in e.value or "unreadable" in e.value for e in at.error), [e.value for e in at.error]


def test_unknown_run_in_the_url_is_a_message(store):
    at = open_page("head_grids", query={"run": "deadbeef"})
    assert_clean(at)
    assert any("no run 'deadbeef'" in e.value for e in at.error)
    assert at.get("plotly_chart")  # the page still draws the newest run


def test_run_in_the_url_is_selected(store):
    root, ids = store
    at = open_page("explorer", query={"run": ids["demo"][:8]})
    assert_clean(at)
    assert widget(at, "selectbox", "explorer_run").value == ids["demo"]


def test_damaged_index_is_a_message(tmp_path, monkeypatch):
    root = tmp_path / "results"
    root.mkdir()
    (root / "workbench.duckdb").write_bytes(b"\0" * 64)
    monkeypatch.setenv("WORKBENCH_RESULTS", str(root))
    at = open_page("runs")
    assert_clean(at)
    assert any("not a DuckDB file" in e.value for e in at.error)


def test_page_errors_never_reach_the_user_as_tracebacks(store, monkeypatch):
    """Anything unexpected inside a page is one message, not a traceback."""
    import workbench_app.data as data

    def boom(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(data, "pooled_grid", boom)
    at = open_page("explorer")
    assert_clean(at)
    assert any("planted" in e.value for e in at.error)


def test_head_table_with_only_text_is_shown_not_drawn(broken_store):
    root, _ = broken_store
    run_id = Store(root).put_run(
        "notes",
        "tiny-gqa",
        "x",
        head_tables={"heads": pd.DataFrame({"layer": [0], "head": [0], "note": ["hi"]})},
    )
    at = open_page("head_grids")
    widget(at, "selectbox", "grid_run").set_value(run_id).run()
    assert_clean(at)
    assert at.warning and "no numeric column" in at.warning[0].value


def test_pipeline_steps_show_on_their_analysis_page(broken_store):
    root, _ = broken_store
    store = Store(root)
    sinks = store.runs(kind="sinks")["run_id"].iloc[0]
    step = store.put_run(
        "pipeline-step",
        "tiny-gqa",
        "step",
        params={"step": "sinks", "id": "sinks", "pipeline": "fixture"},
        head_tables={"heads": store.head_table(sinks)},
        arrays={"sink_k": store.array(sinks, "sink_k")},
        summary=store.summary(sinks),
    )
    at = open_page("sinks")
    picker = widget(at, "selectbox", "sinks_run")
    assert any(step in label and label.startswith("pipeline step sinks") for label in picker.options)
    picker.set_value(step).run()
    assert_clean(at)
    assert not at.error
    np.testing.assert_allclose(values(charts(at)[1]["data"][0]["y"]), store.array(sinks, "sink_k")["sink"])


@pytest.mark.parametrize("page", PAGES)
def test_every_figure_and_table_has_a_download_button(store, page):
    at = open_page(page)
    assert_clean(at)
    if page == "interventions":  # it draws nothing until its button runs the model
        widget(at, "slider", "iv_new").set_value(6).run()
        at.button(key="iv_run").click().run()
        assert_clean(at)
    buttons = at.get("download_button")
    shown = len(at.get("plotly_chart")) + len(at.dataframe)
    assert shown and len(buttons) == shown, (page, len(buttons), shown)
    labels = [b.proto.label for b in buttons]
    assert labels.count("Download figure (HTML)") == len(at.get("plotly_chart"))
    assert labels.count("Download table (CSV)") == len(at.dataframe)


def test_compare_page_shows_the_libraries_comparison(broken_store):
    from workbench.analyses.compare import compare_runs

    root, ids = broken_store
    store = Store(root)
    other = store.head_table(ids["demo"])
    other["sink_mass"] = other["sink_mass"][::-1].to_numpy()  # a second "model": same heads, other values
    other["entropy"] = other["entropy"] + 0.25
    second = store.put_run("capture", "tiny-gqa-b", "other", head_tables={"heads": other})
    at = open_page("compare")
    assert_clean(at)
    widget(at, "selectbox", "compare_a").set_value(ids["demo"]).run()
    widget(at, "selectbox", "compare_b").set_value(second).run()
    widget(at, "selectbox", "compare_statistic").set_value("sink_mass").run()
    assert_clean(at)
    expected = compare_runs(store, ids["demo"], second)
    summary = at.dataframe[0].value
    pd.testing.assert_frame_equal(
        summary.reset_index(drop=True), expected.summary, check_dtype=False, check_exact=False
    )
    entropy = summary.set_index("statistic").loc["entropy"]
    assert entropy["max_abs_difference"] == pytest.approx(0.25) and entropy["rank_correlation"] == pytest.approx(1.0)
    rows = expected.heads[expected.heads["statistic"] == "sink_mass"]
    grid = rows.pivot_table(index="layer", columns="head", values="difference").sort_index()
    np.testing.assert_allclose(values(charts(at)[0]["data"][0]["z"]), grid.to_numpy(), rtol=1e-6)


def test_runs_page_hides_shard_runs_unless_asked(broken_store):
    root, _ = broken_store
    shard = Store(root).put_run("shard", "tiny-gqa", "s", arrays={"result": pd.DataFrame({"x": [1]})})
    at = open_page("runs")
    assert_clean(at)
    assert shard not in set(at.dataframe[0].value["run_id"])
    at.toggle(key="runs_internal").set_value(True).run()
    assert_clean(at)
    assert shard in set(at.dataframe[0].value["run_id"])
