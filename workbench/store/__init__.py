"""The results store: DuckDB index + per-(layer, head) tables, larger arrays as Parquet beside it.

Layout under ``results_dir()``::

    workbench.duckdb          runs(run_id, kind, model, input_hash, spec, params, created, path)
                              head_tables(run_id, name, layer, head, kv_head, metric, value)
    runs/<run_id>/            <array>.parquet, summary.json, heads-<name>.parquet

A run's id is a content hash of (kind, model, input hash, spec, params): re-running the same run is a
no-op. Files are written to a staging folder and renamed into place, then indexed in one transaction.
"""

from __future__ import annotations

__all__ = ["RunRecord", "Store", "StepOutput", "content_hash", "default_store", "files_hash", "path_hash"]


def __getattr__(name: str):
    """Imported on first use: the CLI's Step options import ``workbench.store.record`` without DuckDB."""
    if name in ("Store", "content_hash", "default_store", "files_hash", "path_hash"):
        from workbench.store import store

        return getattr(store, name)
    if name in ("StepOutput", "RunRecord"):
        from workbench.store import record

        return getattr(record, name)
    raise AttributeError(f"module 'workbench.store' has no attribute {name!r}")
