"""Read the store for the dashboard: every read goes through ``workbench.store.Store`` (which owns the file
layout), cached here around its readers, and one error type with a message for people.

Pages never read a whole per-token array of a long run: pooled maps and per-token arrays are read with the
store's ``filters`` on ``(layer, head)`` (the files are written sorted by layer and head, so row-group
statistics skip the rest) and only the ``columns`` a view needs. Cache keys carry the file's modification
time and size, so a rewritten run is read again.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import streamlit as st

from workbench import paths
from workbench.store import Store
from workbench.store.store import StoreError


class Unavailable(RuntimeError):
    """A run, table or array the page needs cannot be read; the message says what to do."""


def store_root() -> str:
    return str(paths.results_dir().resolve())


def _stamp(path: Path) -> tuple[int, int]:
    """Cache key part that changes when a file is rewritten."""
    try:
        info = path.stat()
    except OSError:
        return (0, 0)
    return (info.st_mtime_ns, info.st_size)


def _store(root: str) -> Store:
    return Store(root)


def _index_stamp(root: str) -> tuple[int, int]:
    return _stamp(_store(root).db_path)


@st.cache_data(show_spinner=False, max_entries=8)
def _runs(root: str, stamp: tuple[int, int], internal: bool) -> pd.DataFrame:
    table = _store(root).runs(internal=internal)
    for column in ("spec", "params"):
        table[column] = table[column].fillna("{}")
    return table


def _looks_like_duckdb(path: Path) -> bool:
    """DuckDB files carry ``DUCK`` at byte 8: a cheap first check before the store opens the file."""
    try:
        with open(path, "rb") as handle:
            return handle.read(12)[8:12] == b"DUCK"
    except OSError:
        return False


def runs(root: str | None = None, internal: bool = False) -> pd.DataFrame:
    """Every run in the index (newest first); empty when the store does not exist yet. Internal runs
    (a sweep's shards) only with ``internal=True``."""
    root = root or store_root()
    index = _store(root).db_path
    if index.exists() and not _looks_like_duckdb(index):
        raise Unavailable(
            f"the store index {index} is not a DuckDB file; move it away and re-run `make demo`"
        )
    try:
        return _runs(root, _stamp(index), internal)
    except Exception as error:  # a damaged index is a message, not a traceback
        raise Unavailable(
            f"the store index {index} cannot be read ({error}); move it away and re-run `make demo`"
        ) from None


PIPELINE_STEP = "pipeline-step"


def step_of(record) -> str | None:
    """The analysis a ``workbench pipeline`` step ran (its runs hold the same tables as the command's)."""
    if record["kind"] != PIPELINE_STEP:
        return None
    return parse_json(record["params"]).get("step")


def runs_of_kind(
    kinds: tuple[str, ...] | str, root: str | None = None, steps: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Runs of these kinds, plus pipeline steps that ran one of ``steps``."""
    table = runs(root)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    keep = table["kind"].isin(kinds)
    if steps:
        keep |= pd.Series(
            [step_of(row) in steps for _, row in table.iterrows()], index=table.index, dtype=bool
        )
    return table[keep].reset_index(drop=True)


def runs_where(table: pd.DataFrame, keep) -> pd.DataFrame:
    """The runs for which ``keep(run_id)`` holds (an empty table stays a table with its columns)."""
    mask = [bool(keep(run_id)) for run_id in table["run_id"]]
    return table[pd.Series(mask, index=table.index, dtype=bool)].reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=512)
def _run_dir(root: str, run_id: str, stamp: tuple[int, int]) -> Path:
    return _store(root).run_dir(run_id)


def run_dir(run_id: str, root: str | None = None) -> Path:
    """The run's folder (the index is read once per change of the index file)."""
    root = root or store_root()
    try:
        path = _run_dir(root, run_id, _index_stamp(root))
    except StoreError as error:
        raise Unavailable(f"{error}; list the runs with `workbench runs`") from None
    if not path.is_dir():
        raise Unavailable(
            f"run {run_id} is in the index but its folder {path} is missing; re-run the job that made it"
        )
    return path


class _Run(Store):
    """The store with the run's folder resolved once per call (through the cached ``run_dir`` above)."""

    def __init__(self, root: str):
        super().__init__(root)
        self._root_key = root

    def run_dir(self, run_id: str) -> Path:
        return run_dir(run_id, self._root_key)


def _reader(root: str | None) -> _Run:
    return _Run(root or store_root())


def _unreadable(run_id: str, what: str, path: Path, error: Exception) -> Unavailable:
    return Unavailable(
        f"run {run_id}: {what} ({path.name}) is unreadable: {type(error).__name__}: {error}. "
        f"The run is corrupt; delete {path.parent} and re-run the job that made it."
    )


def parse_json(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@st.cache_data(show_spinner=False, max_entries=64)
def _summary(root: str, run_id: str, stamp: tuple[int, int]):
    return _reader(root).summary(run_id)


def summary(run_id: str, root: str | None = None) -> dict:
    root = root or store_root()
    path = _reader(root).summary_path(run_id)
    if not path.exists():
        return {}
    try:
        value = _summary(root, run_id, _stamp(path))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _unreadable(run_id, "the summary", path, error) from None
    if not isinstance(value, dict):
        raise _unreadable(run_id, "the summary", path, ValueError("not a JSON object"))
    return value


def head_table_names(run_id: str, root: str | None = None) -> list[str]:
    return _reader(root).head_table_names(run_id)


def has_head_tables(run_id: str, root: str | None = None) -> bool:
    """For listing: a run whose folder is gone simply has none (its own page says why)."""
    try:
        return bool(head_table_names(run_id, root))
    except Unavailable:
        return False


def has_array(run_id: str, name: str, root: str | None = None) -> bool:
    try:
        return _reader(root).array_path(run_id, name).exists()
    except Unavailable:
        return False


def array_names(run_id: str, root: str | None = None) -> list[str]:
    return _reader(root).array_names(run_id)


@st.cache_data(show_spinner=False, max_entries=64)
def _read(root: str, run_id: str, name: str, head: bool, stamp, columns, filters) -> pd.DataFrame:
    reader = _reader(root)
    if head:
        return reader.head_table(run_id, name, columns=columns, filters=filters)
    return reader.array(run_id, name, filters=filters, columns=columns)


def _table(run_id: str, name: str, head: bool, columns=None, filters=None, root=None) -> pd.DataFrame:
    root = root or store_root()
    reader = _reader(root)
    path = reader.head_table_path(run_id, name) if head else reader.array_path(run_id, name)
    what = f"head table {name!r}" if head else f"array {name!r}"
    if not path.exists():
        raise Unavailable(f"run {run_id} has no {what}")
    try:
        return _read(
            root,
            run_id,
            name,
            head,
            _stamp(path),
            tuple(columns) if columns else None,
            tuple(tuple(f) for f in filters) if filters else None,
        )
    except StoreError as error:
        raise Unavailable(str(error)) from None
    except (OSError, pa.ArrowException, ValueError) as error:
        raise _unreadable(run_id, what, path, error) from None


def head_table(run_id: str, name: str = "heads", root: str | None = None, columns=None) -> pd.DataFrame:
    return _table(run_id, name, True, columns, None, root)


def array(run_id: str, name: str, columns=None, filters=None, root: str | None = None) -> pd.DataFrame:
    """One stored array, optionally only some columns and rows (filters, e.g. [("layer", "==", 3)])."""
    return _table(run_id, name, False, columns, filters, root)


@st.cache_data(show_spinner=False, max_entries=256)
def _schema(root: str, run_id: str, name: str, head: bool, stamp) -> tuple[list[str], int] | None:
    reader = _reader(root)
    return reader.head_table_schema(run_id, name) if head else reader.array_schema(run_id, name)


def _schema_of(run_id: str, name: str, head: bool, root: str | None) -> tuple[list[str], int] | None:
    """Column names and row count from the Parquet footer (cheap, even for a 128k-token array)."""
    root = root or store_root()
    reader = _reader(root)
    path = reader.head_table_path(run_id, name) if head else reader.array_path(run_id, name)
    if not path.exists():
        return None
    try:
        return _schema(root, run_id, name, head, _stamp(path))
    except (OSError, pa.ArrowException) as error:
        what = f"head table {name!r}" if head else f"array {name!r}"
        raise _unreadable(run_id, what, path, error) from None


def array_columns(run_id: str, name: str, root: str | None = None) -> list[str]:
    schema = _schema_of(run_id, name, False, root)
    return schema[0] if schema else []


def array_columns_of_head_table(run_id: str, name: str = "heads", root: str | None = None) -> list[str]:
    schema = _schema_of(run_id, name, True, root)
    return schema[0] if schema else []


def array_rows(run_id: str, name: str, root: str | None = None) -> int:
    schema = _schema_of(run_id, name, False, root)
    return schema[1] if schema else 0


def file_sizes(run_id: str, root: str | None = None) -> pd.DataFrame:
    return _reader(root).files(run_id)


# --- run facts the views share --------------------------------------------------------------------


def num_tokens(run_id: str, root: str | None = None) -> int | None:
    info = summary(run_id, root)
    for key in ("num_tokens", "tokens"):
        value = info.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, list):
            return len(value)
    return None


def tokens(run_id: str, root: str | None = None) -> list[str] | None:
    """Token strings of a capture run: from the summary (runs up to 4096 tokens) or, for longer runs,
    from one (layer, head) slice of the per-token array."""
    info = summary(run_id, root)
    if isinstance(info.get("tokens"), list):
        return [str(t) for t in info["tokens"]]
    if "tokens" not in array_names(run_id, root):
        return None
    columns = array_columns(run_id, "tokens", root)
    if "token" not in columns or "query" not in columns:
        return None
    layers, heads = info.get("layers") or [0], info.get("heads") or [0]
    frame = array(
        run_id,
        "tokens",
        columns=("query", "token"),
        filters=(("layer", "==", int(layers[0])), ("head", "==", int(heads[0]))),
        root=root,
    )
    return frame.sort_values("query")["token"].astype(str).tolist()


def layers_and_heads(run_id: str, root: str | None = None) -> tuple[list[int], list[int]]:
    info = summary(run_id, root)
    layers, heads = info.get("layers"), info.get("heads")
    if isinstance(layers, list) and isinstance(heads, list) and layers and heads:
        return [int(x) for x in layers], [int(x) for x in heads]
    names = head_table_names(run_id, root)
    if not names:
        raise Unavailable(f"run {run_id} records neither its layers and heads nor a head table")
    table = head_table(run_id, names[0], root)
    return sorted(int(x) for x in table["layer"].unique()), sorted(int(x) for x in table["head"].unique())


def cell_size(num_tokens: int, num_cells: int, requested: int | None = None) -> int:
    """Tokens per pooled cell, as the seam pools: ``ceil(T / min(pooled_cells, T))``."""
    if requested:
        return math.ceil(num_tokens / min(int(requested), num_tokens))
    return math.ceil(num_tokens / num_cells)


def pooled_grid(run_id: str, layer: int, head: int, root: str | None = None):
    """The (query_cell, key_cell) mean-probability grid of one head, read with a row filter."""
    import numpy as np

    frame = array(
        run_id,
        "pooled",
        columns=("query_cell", "key_cell", "value"),
        filters=(("layer", "==", int(layer)), ("head", "==", int(head))),
        root=root,
    )
    if frame.empty:
        raise Unavailable(f"run {run_id} has no pooled map for layer {layer}, head {head}")
    n = int(max(frame["query_cell"].max(), frame["key_cell"].max())) + 1
    grid = np.full((n, n), np.nan)
    grid[frame["query_cell"].to_numpy(), frame["key_cell"].to_numpy()] = frame["value"].to_numpy()
    return grid


def environment_summary() -> dict:
    return {"store": store_root(), "WORKBENCH_RESULTS": os.environ.get("WORKBENCH_RESULTS", "(unset)")}
