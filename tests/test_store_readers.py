"""The store's readers take columns and row filters, and say what a run holds without reading it."""

import pandas as pd
import pytest

from workbench.store.store import StoreError


def _long_run(store):
    rows = [(layer, head, query) for layer in range(3) for head in range(2) for query in range(50)]
    tokens = pd.DataFrame(rows, columns=["layer", "head", "query"])
    tokens["value"] = tokens["query"] * 0.5
    heads = pd.DataFrame({"layer": [0, 1], "head": [0, 1], "kv_head": [0, 0], "score": [0.5, 0.25]})
    return store.put_run("capture", "m", "h", head_tables={"heads": heads}, arrays={"tokens": tokens}), tokens, heads


def test_array_columns_and_filters(store):
    run_id, tokens, _ = _long_run(store)
    pd.testing.assert_frame_equal(store.array(run_id, "tokens"), tokens)  # the old call still reads it all
    part = store.array(run_id, "tokens", [("layer", "==", 1), ("head", "==", 0)], columns=["query", "value"])
    assert list(part.columns) == ["query", "value"] and len(part) == 50
    same = store.array(run_id, "tokens", filters=(("layer", "==", 1), ("head", "==", 0)), columns=("query", "value"))
    pd.testing.assert_frame_equal(part, same)  # tuples (hashable, for caches) read the same
    either = store.array(run_id, "tokens", filters=[[("layer", "==", 0)], [("layer", "==", 2)]])  # DNF
    assert sorted(either.layer.unique()) == [0, 2]


def test_head_table_columns_filters_and_schemas(store):
    run_id, tokens, heads = _long_run(store)
    pd.testing.assert_frame_equal(store.head_table(run_id), heads)
    assert list(store.head_table(run_id, columns=["layer", "score"]).columns) == ["layer", "score"]
    assert store.head_table(run_id, filters=[("layer", "==", 1)]).score.tolist() == [0.25]
    assert store.array_schema(run_id, "tokens") == (["layer", "head", "query", "value"], len(tokens))
    assert store.head_table_schema(run_id) == (list(heads.columns), 2)
    assert store.array_schema(run_id, "nothing") is None
    assert store.array_path(run_id, "tokens").exists() and store.head_table_path(run_id).exists()
    files = store.files(run_id)
    assert {"heads-heads.parquet", "tokens.parquet", "run.json"} <= set(files.file) and (files.bytes > 0).all()
    with pytest.raises(StoreError, match="has no array 'nothing'"):
        store.array(run_id, "nothing")
    with pytest.raises(StoreError, match="has no head table 'other'"):
        store.head_table(run_id, "other")
