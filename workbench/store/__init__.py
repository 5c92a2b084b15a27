"""The results store: DuckDB index + per-(layer, head) tables, larger arrays as Parquet beside it.

Layout under ``results_dir()``::

    workbench.duckdb          runs(run_id, kind, model, input_hash, spec, params, created, path)
                              head_tables(run_id, name, layer, head, kv_head, metric, value)
    runs/<run_id>/            <array>.parquet, summary.json, heads-<name>.parquet

A run's id is a content hash of (kind, model, input hash, spec, params): re-running the same run is a
no-op. Files are written to a staging folder and renamed into place, then indexed in one transaction.
"""

from workbench.store.store import Store, content_hash, default_store

__all__ = ["Store", "content_hash", "default_store"]
