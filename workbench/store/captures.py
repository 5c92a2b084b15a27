"""Turn a Capture into store records: the head table, per-token statistics and the pooled map."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

from workbench.capture import Capture
from workbench.store.record import StepOutput
from workbench.store.store import Store


def hash_ids(ids) -> str:
    array = np.asarray(torch.as_tensor(ids).cpu(), dtype=np.int64)
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


def capture_arrays(capture: Capture) -> dict[str, pd.DataFrame]:
    arrays = {}
    tokens = capture.to_frame("row")
    if not tokens.empty:
        arrays["tokens"] = tokens[tokens["batch"] == 0].drop(columns="batch")
    keys = capture.to_frame("key")
    if not keys.empty:
        arrays["keys"] = keys[keys["batch"] == 0].drop(columns="batch")
    if capture.pooled is not None:
        pooled = capture.pooled[0].float().numpy()  # (layer, head, qcell, kcell)
        n_l, n_h, n_q, n_k = pooled.shape
        index = pd.MultiIndex.from_product(
            [capture.layers, capture.heads, range(n_q), range(n_k)],
            names=["layer", "head", "query_cell", "key_cell"],
        )
        frame = pd.DataFrame({"value": pooled.reshape(-1)}, index=index).reset_index()
        arrays["pooled"] = frame
    return arrays


def capture_record(
    capture: Capture,
    *,
    input_ids,
    kind: str = "capture",
    params: dict | None = None,
    head_table: pd.DataFrame | None = None,
    summary: dict | None = None,
) -> StepOutput:
    """The run record of ``capture``: its head table, per-token statistics, pooled map and a summary
    (tokens, layers, heads, the attention backend of each layer)."""
    table = head_table if head_table is not None else capture.head_table()
    info = {
        "num_tokens": int(len(capture.positions)),
        "layers": capture.layers,
        "heads": capture.heads,
        "attention_backend": capture.backend,
        "backends": {str(layer): name for layer, name in capture.backends.items()},
    }
    info.update(summary or {})
    if capture.tokens is not None:
        info["tokens"] = capture.tokens if len(capture.tokens) <= 4096 else None
    return StepOutput(
        head_tables={"heads": table},
        arrays=capture_arrays(capture),
        summary=info,
        kind=kind,
        input_hash=hash_ids(input_ids),
        spec=capture.meta.get("spec", {}),
        params=params,
        backend=capture.backend if capture.backends else None,
    )


def save_capture(
    store: Store,
    capture: Capture,
    *,
    model: str,
    input_ids,
    kind: str = "capture",
    params: dict | None = None,
    head_table: pd.DataFrame | None = None,
    summary: dict | None = None,
    runtime: dict | None = None,
) -> str:
    """Record ``capture`` in ``store`` from a notebook; returns the run id (the same id if it was already
    there). ``runtime``: where it ran (``workbench.devices.run_record``); the backend defaults to the
    capture's. The workbench's own commands record captures through ``workbench.pipeline.runner``."""
    spec = capture.meta.get("spec", {})
    if runtime is not None:
        runtime = {**runtime, "backend": capture.backend if capture.backends else runtime.get("backend")}
    run_id = store.run_id(kind, model, hash_ids(input_ids), spec, params, runtime)
    if store.has(run_id):
        return run_id
    record = capture_record(
        capture, input_ids=input_ids, kind=kind, params=params, head_table=head_table, summary=summary
    )
    return store.put_run(
        kind, model, record.input_hash, spec=record.spec, params=params, head_tables=record.head_tables,
        arrays=record.arrays, summary=record.summary, run_id=run_id, runtime=runtime,
    )  # fmt: skip
