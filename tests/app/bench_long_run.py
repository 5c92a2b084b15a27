"""Page load times on a 128k-token run (run by hand; writes ~2 GB):

    python tests/app/bench_long_run.py /tmp/long-store [--tokens 131072]

Builds a store with one ``capture`` run of SmolLM2-135M's shape (30 layers x 9 heads) at 128k tokens,
laid out exactly as ``save_capture`` lays it out (per-token ``tokens`` and per-key ``keys`` arrays of
30 x 9 x T rows, a 256-cell pooled map, the head table; no token list in the summary past 4096 tokens),
with random values. Then times each page under AppTest (a fresh AppTest per page; "cold" clears the
data cache first), as wall seconds and as CPU seconds of the process (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
LAYERS, HEADS, KV = 30, 9, 3
ROW_GROUP = 1024 * 1024  # pyarrow's default, as pandas.to_parquet writes the store's arrays


def write_arrays(folder: Path, tokens: int, cells: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"Ġword{i}" for i in range(5000)], dtype=object)
    token_column = vocabulary[rng.integers(0, len(vocabulary), tokens)]
    row_names = ("lse", "entropy", "max", "sink_mass", "local_mass", "mean_distance", "waad")
    with (
        pq.ParquetWriter(folder / "tokens.parquet", _token_schema(row_names)) as token_writer,
        pq.ParquetWriter(folder / "keys.parquet", _key_schema()) as key_writer,
    ):
        for layer in range(LAYERS):
            for head in range(HEADS):
                base = {
                    "layer": np.full(tokens, layer, np.int64),
                    "head": np.full(tokens, head, np.int64),
                    "kv_head": np.full(tokens, head // (HEADS // KV), np.int64),
                }
                rows = {**base, "query": np.arange(tokens, dtype=np.int64)}
                for name in row_names:
                    rows[name] = rng.random(tokens, dtype=np.float32)
                rows["argmax"] = np.zeros(tokens, np.int64)
                rows["token"] = token_column
                token_writer.write_table(pa.table(rows, schema=token_writer.schema), row_group_size=ROW_GROUP)
                keys = {
                    **base,
                    "key": np.arange(tokens, dtype=np.int64),
                    "received": rng.random(tokens, dtype=np.float32),
                }
                key_writer.write_table(pa.table(keys, schema=key_writer.schema), row_group_size=ROW_GROUP)
    n = cells
    query, key = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    pooled = []
    for layer in range(LAYERS):
        for head in range(HEADS):
            value = np.where(key <= query, rng.random((n, n)) / (query + 1) / math.ceil(tokens / n), 0.0)
            pooled.append(
                pa.table(
                    {
                        "layer": np.full(n * n, layer, np.int64),
                        "head": np.full(n * n, head, np.int64),
                        "query_cell": query.ravel().astype(np.int64),
                        "key_cell": key.ravel().astype(np.int64),
                        "value": value.ravel().astype(np.float32),
                    }
                )
            )
    pq.write_table(pa.concat_tables(pooled), folder / "pooled.parquet", row_group_size=ROW_GROUP)


def _token_schema(row_names) -> pa.Schema:
    fields = [pa.field(n, pa.int64()) for n in ("layer", "head", "kv_head", "query")]
    fields += [pa.field(n, pa.float32()) for n in row_names]
    fields += [pa.field("argmax", pa.int64()), pa.field("token", pa.large_string())]
    return pa.schema(fields)


def _key_schema() -> pa.Schema:
    return pa.schema(
        [pa.field(n, pa.int64()) for n in ("layer", "head", "kv_head", "key")]
        + [pa.field("received", pa.float32())]
    )


def build(root: Path, tokens: int, cells: int) -> str:
    import pandas as pd

    from workbench.store import Store

    store = Store(root)
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        [
            {
                "layer": layer,
                "head": head,
                "kv_head": head // 3,
                "sink_mass": rng.random(),
                "entropy": rng.random() * 8,
            }
            for layer in range(LAYERS)
            for head in range(HEADS)
        ]
    )
    spec = {"pooled_cells": cells, "key_statistics": ["received"]}
    summary = {
        "num_tokens": tokens,
        "layers": list(range(LAYERS)),
        "heads": list(range(HEADS)),
        "tokens": None,
    }
    run_id = store.put_run(
        "capture", "smollm2-135m", f"long-{tokens}", spec=spec, head_tables={"heads": table}, summary=summary
    )
    folder = store.run_dir(run_id)
    if not (folder / "pooled.parquet").exists():
        write_arrays(folder, tokens, cells)
    return run_id


def time_pages(root: Path, run_id: str) -> dict[str, dict]:
    import os

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["WORKBENCH_RESULTS"] = str(root)
    sys.path.insert(0, str(HERE.parents[1] / "app"))
    main = HERE.parents[1] / "app" / "main.py"
    AppTest.from_file(str(main), default_timeout=600).run()  # imports (torch, transformers, plotly) once
    times = {}
    for page in ("runs", "head_grids", "explorer"):
        for attempt in ("cold", "warm"):
            if attempt == "cold":
                st.cache_data.clear()
            at = AppTest.from_file(str(main), default_timeout=600)
            at.query_params["run"] = run_id
            at.switch_page(f"views/{page}.py")
            started, cpu = time.perf_counter(), time.process_time()
            at.run()
            # wall seconds, and CPU seconds of this process (what the page costs on an idle machine)
            times[f"{page} ({attempt})"] = {
                "wall_s": round(time.perf_counter() - started, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
            }
            assert not at.exception, [e.value for e in at.exception]
            assert not at.error, [e.value for e in at.error]
    return times


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--tokens", type=int, default=131072)
    parser.add_argument("--cells", type=int, default=256)
    args = parser.parse_args()
    started = time.perf_counter()
    run = build(args.root, args.tokens, args.cells)
    built = time.perf_counter() - started
    sizes = {p.name: p.stat().st_size for p in (args.root / "runs" / run).iterdir()}
    print(json.dumps({"run": run, "build_seconds": round(built, 1), "bytes": sizes}, indent=1))
    print(json.dumps(time_pages(args.root, run), indent=1))
