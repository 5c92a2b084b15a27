import pandas as pd

from workbench.store import content_hash


def test_run_id_is_content_hash_and_rerun_is_noop(store):
    table = pd.DataFrame({"layer": [0, 0], "head": [0, 1], "kv_head": [0, 0], "score": [0.5, 0.25]})
    first = store.put_run(
        "capture", "m", "abc", spec={"a": 1}, head_tables={"heads": table}, summary={"x": 1}
    )
    second = store.put_run("capture", "m", "abc", spec={"a": 1}, head_tables={"heads": table * 2})
    assert first == second == store.run_id("capture", "m", "abc", {"a": 1})
    assert len(store.runs()) == 1
    pd.testing.assert_frame_equal(store.head_table(first), table)  # the first write stands
    assert store.query("SELECT count(*) AS n FROM head_tables").n[0] == 2
    other = store.put_run("capture", "m", "abd", spec={"a": 1}, head_tables={"heads": table})
    assert other != first and len(store.runs()) == 2
    assert not [p for p in (store.root / "runs").iterdir() if p.name.startswith(".")]  # no staging left


def test_content_hash_ignores_key_order():
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})


def test_capture_round_trip_through_store(store, tiny):
    import workbench as wb
    from workbench.store.captures import save_capture

    ids = tiny.encode("Stored captures come back unchanged from Parquet.")
    _, capture = tiny.run(ids, wb.CaptureSpec(key_statistics=("received",), pooled_cells=8))
    run_id = save_capture(store, capture, model="tiny-gqa", input_ids=ids)
    tokens = store.array(run_id, "tokens")
    assert len(tokens) == 2 * 4 * ids.shape[-1]
    entropy = tokens[(tokens["layer"] == 1) & (tokens["head"] == 2)].sort_values("query").entropy.to_numpy()
    assert (abs(entropy - capture.row["entropy"][0, 1, 2].numpy()) < 1e-7).all()
    pooled = store.array(run_id, "pooled")
    t = ids.shape[-1]
    cells = -(-t // -(-t // 8))  # at most 8 cells of equal size ceil(T / 8)
    assert pooled.value.max() <= 1 and len(pooled) == 2 * 4 * cells * cells
    assert store.summary(run_id)["num_tokens"] == ids.shape[-1]
