from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from workbench import paths

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, kind TEXT, model TEXT, input_hash TEXT,
    spec TEXT, params TEXT, created TIMESTAMP, path TEXT,
    device TEXT, dtype TEXT, backend TEXT
);
CREATE TABLE IF NOT EXISTS head_tables (
    run_id TEXT, name TEXT, layer INTEGER, head INTEGER, kv_head INTEGER, metric TEXT, value DOUBLE
);
"""
# where a run ran (added later: stores written before have runs without them; see ``_migrate``)
RUNTIME_COLUMNS = ("device", "dtype", "backend")
RUN_COLUMNS = ["run_id", "kind", "model", "input_hash", "spec", "params", "created", "path", *RUNTIME_COLUMNS]


def runtime_key(runtime: dict | None) -> dict:
    """The part of a run's device record that changes its results, so that a CUDA/bfloat16 run is not
    read back as the CPU/float32 one: device type and dtype (not the card index, not the backend)."""
    if not runtime:
        return {}
    device = runtime.get("device")
    return {"device": str(device).split(":")[0] if device else None, "dtype": runtime.get("dtype")}


INTERNAL_KINDS = ("shard",)  # bookkeeping runs (a sweep's or Ray job's shards): hidden from listings by default


def content_hash(*parts) -> str:
    """Stable hash of JSON-able parts (dict keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def path_hash(path) -> str | None:
    """Content hash of a file (its bytes) or a folder (each file's name relative to it and its bytes, in
    name order); None when nothing is there. The name does not enter: a copy hashes the same.

    What a pipeline step's key (and a shard's) holds of the files its options name, so an edited file
    reruns the step instead of reading back the result of the old one."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(b"file\0")
        _update_with_file(digest, path)
    elif path.is_dir():
        digest.update(b"folder\0")
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
        for name, file in files:
            digest.update(name.encode() + b"\0")
            _update_with_file(digest, file)
    else:
        return None
    return digest.hexdigest()[:16]


def _update_with_file(digest, path: Path) -> None:
    digest.update(f"{path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def files_hash(paths: dict[str, list[str]]) -> dict[str, list[str | None]]:
    """``{option: [path_hash of each path]}`` of the files a step reads (``pipeline.options.input_paths``)."""
    return {name: [path_hash(item) for item in items] for name, items in sorted(paths.items())}


class StoreError(RuntimeError):
    pass


class StoreCorruptError(StoreError):
    """The store's database file is not a DuckDB database (overwritten, truncated): waiting will not help."""


class StoreLockedError(StoreError):
    """Another process holds the store's database file; it was retried for ``Store.lock_wait_s`` seconds."""


def _is_lock_error(error: Exception) -> bool:
    return "lock" in str(error).lower()


class Store:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else paths.results_dir()
        self.db_path = self.root / "workbench.duckdb"

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # --- connections ---------------------------------------------------------------------------

    lock_wait_s = 5.0  # how long a connection waits for another process's lock before giving up

    def _connect(self, read_only=False):
        if read_only and not self.db_path.exists():
            return None
        if not read_only:
            self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.db_path), read_only=read_only)
                if not read_only:
                    con.execute(_SCHEMA)
                    _migrate(con)
                return con
            except duckdb.Error as error:
                if not _is_lock_error(error):
                    raise StoreCorruptError(
                        f"the store {self.db_path} is not a readable DuckDB database ({_first_line(error)}); "
                        f"move it away (e.g. mv {self.db_path} {self.db_path}.bad) to start a new store, "
                        "or pass --results DIR to use another one"
                    ) from None
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"the store {self.db_path} is locked by another process ({_lock_holder(error)}) and "
                        f"stayed locked for {self.lock_wait_s:g} s; wait for it to finish, "
                        "or pass --results DIR to use another store"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def check(self) -> None:
        """Open the store once and read its index, before any model work: a corrupt file raises
        ``StoreCorruptError``, a lock held past ``lock_wait_s`` ``StoreLockedError``. A missing store is fine
        (it is created on the first write); nothing is written."""
        con = self._connect(read_only=True)
        if con is None:
            return
        try:
            con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        except duckdb.Error as error:
            raise StoreCorruptError(
                f"the store {self.db_path} cannot be read ({_first_line(error)}); move it away "
                f"(e.g. mv {self.db_path} {self.db_path}.bad) or pass --results DIR to use another store"
            ) from None
        finally:
            con.close()

    # --- writing -------------------------------------------------------------------------------

    def run_id(
        self,
        kind: str,
        model: str,
        input_hash: str,
        spec: dict | None = None,
        params: dict | None = None,
        runtime: dict | None = None,
    ) -> str:
        key = runtime_key(runtime)
        parts = (kind, model, input_hash, spec or {}, params or {}) + ((key,) if key else ())
        return content_hash(*parts)

    def has(self, run_id: str) -> bool:
        con = self._connect(read_only=True)
        if con is None:
            return False
        try:
            return con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone() is not None
        except duckdb.CatalogException:
            return False
        finally:
            con.close()

    def put_run(
        self,
        kind: str,
        model: str,
        input_hash: str,
        *,
        spec: dict | None = None,
        params: dict | None = None,
        head_tables: dict[str, pd.DataFrame] | None = None,
        arrays: dict[str, pd.DataFrame] | None = None,
        summary: dict | None = None,
        run_id: str | None = None,
        runtime: dict | None = None,
    ) -> str:
        """Record a run; returns its id. A run already in the store is left as it is.

        ``runtime``: where it ran, ``{"device", "dtype", "backend"}`` (``workbench.devices.run_record``)."""
        run_id = run_id or self.run_id(kind, model, input_hash, spec, params, runtime)
        runtime = {name: (runtime or {}).get(name) for name in RUNTIME_COLUMNS}
        if self.has(run_id):
            return run_id
        runs_dir = self.root / "runs"
        runs_dir.mkdir(parents=True, exist_ok=True)
        final = runs_dir / run_id
        staging = Path(tempfile.mkdtemp(prefix=f".{run_id}-", dir=runs_dir))
        try:
            for name, table in (head_tables or {}).items():
                table.to_parquet(staging / f"heads-{name}.parquet", index=False)
            for name, table in (arrays or {}).items():
                table.to_parquet(staging / f"{name}.parquet", index=False)
            meta = {
                "run_id": run_id,
                "kind": kind,
                "model": model,
                "input_hash": input_hash,
                "spec": spec,
                "params": params,
                **runtime,
            }
            (staging / "run.json").write_text(json.dumps(meta, indent=2, default=str))
            if summary is not None:
                (staging / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        long_tables = []
        for name, table in (head_tables or {}).items():
            metrics = [
                c
                for c in table.columns
                if c not in ("layer", "head", "kv_head") and pd.api.types.is_numeric_dtype(table[c])
            ]
            frame = table.copy()
            frame[metrics] = frame[metrics].astype(float)  # bool flag columns are metrics too (0/1)
            if "kv_head" not in frame:
                frame["kv_head"] = -1
            melted = frame.melt(
                id_vars=["layer", "head", "kv_head"],
                value_vars=metrics,
                var_name="metric",
                value_name="value",
            )
            melted.insert(0, "name", name)
            melted.insert(0, "run_id", run_id)
            long_tables.append(melted[["run_id", "name", "layer", "head", "kv_head", "metric", "value"]])
        con = self._connect()
        try:
            con.execute("BEGIN TRANSACTION")
            if con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone() is not None:
                con.execute("ROLLBACK")  # another writer recorded it first: keep exactly one record
                return run_id
            con.execute(
                f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))}) "
                "ON CONFLICT DO NOTHING",
                [
                    run_id,
                    kind,
                    model,
                    input_hash,
                    json.dumps(spec or {}, sort_keys=True),
                    json.dumps(params or {}, sort_keys=True, default=str),
                    _dt.datetime.now(),
                    str(final),
                    *(None if runtime[name] is None else str(runtime[name]) for name in RUNTIME_COLUMNS),
                ],
            )
            for frame in long_tables:
                con.register("incoming", frame)
                con.execute("INSERT INTO head_tables SELECT * FROM incoming")
                con.unregister("incoming")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        return run_id

    # --- reading -------------------------------------------------------------------------------

    def runs(self, model: str | None = None, kind: str | None = None, internal: bool = True) -> pd.DataFrame:
        """The index, newest first; ``internal=False`` leaves out ``INTERNAL_KINDS`` (unless asked by ``kind``)."""
        con = self._connect(read_only=True)
        if con is None:
            return pd.DataFrame(columns=RUN_COLUMNS)
        try:
            query, args = "SELECT * FROM runs WHERE 1=1", []
            if model:
                query, args = query + " AND model = ?", args + [model]
            if kind:
                query, args = query + " AND kind = ?", args + [kind]
            elif not internal:
                query += f" AND kind NOT IN ({', '.join('?' for _ in INTERNAL_KINDS)})"
                args += list(INTERNAL_KINDS)
            table = con.execute(query + " ORDER BY created DESC", args).df()
        finally:
            con.close()
        for name in RUNTIME_COLUMNS:  # a store written before these columns existed: empty
            if name not in table:
                table[name] = None
        return table

    def run(self, run_id: str) -> dict:
        runs = self.runs()
        match = runs[runs["run_id"].str.startswith(run_id)]
        if match.empty:
            raise StoreError(f"no run {run_id!r} in {self.root}")
        return match.iloc[0].to_dict()

    def run_dir(self, run_id: str) -> Path:
        record = self.run(run_id)
        # the store's own folder first: the indexed path may be relative to another cwd, or the store moved
        local = self.root / "runs" / record["run_id"]
        return local if local.exists() else Path(record["path"])

    # A run's files: ``heads-<name>.parquet`` (head tables), ``<name>.parquet`` (arrays), ``summary.json``.
    # Readers take ``columns`` (read only these) and ``filters`` (pyarrow row filters such as
    # ``[("layer", "==", 3)]``; arrays are written sorted by layer and head, so row-group statistics skip
    # the rest): a page or notebook never has to read a whole per-token array of a long run.

    def head_table_path(self, run_id: str, name: str = "heads") -> Path:
        return self.run_dir(run_id) / f"heads-{name}.parquet"

    def array_path(self, run_id: str, name: str) -> Path:
        return self.run_dir(run_id) / f"{name}.parquet"

    def summary_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "summary.json"

    def head_table(
        self, run_id: str, name: str = "heads", columns: list[str] | None = None, filters=None
    ) -> pd.DataFrame:
        path = self.head_table_path(run_id, name)
        if not path.exists():
            raise StoreError(f"run {run_id} has no head table {name!r}")
        return _read_parquet(path, columns, filters)

    def head_table_names(self, run_id: str) -> list[str]:
        return sorted(p.stem[len("heads-") :] for p in self.run_dir(run_id).glob("heads-*.parquet"))

    def array(self, run_id: str, name: str, filters=None, columns: list[str] | None = None) -> pd.DataFrame:
        path = self.array_path(run_id, name)
        if not path.exists():
            raise StoreError(f"run {run_id} has no array {name!r}")
        return _read_parquet(path, columns, filters)

    def array_names(self, run_id: str) -> list[str]:
        return sorted(
            p.stem for p in self.run_dir(run_id).glob("*.parquet") if not p.stem.startswith("heads-")
        )

    def array_schema(self, run_id: str, name: str) -> tuple[list[str], int] | None:
        """(column names, row count) of an array from its Parquet footer (cheap, even for a 128k-token
        array); ``None`` when the run has no such array."""
        return _footer(self.array_path(run_id, name))

    def head_table_schema(self, run_id: str, name: str = "heads") -> tuple[list[str], int] | None:
        return _footer(self.head_table_path(run_id, name))

    def files(self, run_id: str) -> pd.DataFrame:
        """The run's files and their sizes (columns ``file``, ``bytes``)."""
        folder = self.run_dir(run_id)
        rows = [{"file": p.name, "bytes": p.stat().st_size} for p in sorted(folder.iterdir()) if p.is_file()]
        return pd.DataFrame(rows, columns=["file", "bytes"])

    def summary(self, run_id: str) -> dict:
        path = self.summary_path(run_id)
        return json.loads(path.read_text()) if path.exists() else {}

    def query(self, sql: str, params=None) -> pd.DataFrame:
        con = self._connect(read_only=True)
        if con is None:
            return pd.DataFrame()
        try:
            return con.execute(sql, params or []).df()
        finally:
            con.close()


def _read_parquet(path: Path, columns=None, filters=None) -> pd.DataFrame:
    filters = list(filters) if filters else None  # a tuple of conditions (hashable, for caches) works too
    return pd.read_parquet(path, columns=list(columns) if columns else None, filters=filters)


def _footer(path: Path) -> tuple[list[str], int] | None:
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    return list(metadata.schema.to_arrow_schema().names), metadata.num_rows


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _lock_holder(error: Exception) -> str:
    text = str(error)
    marker = "Conflicting lock is held in"
    if marker in text:
        return "held by " + text.split(marker, 1)[1].split(". See", 1)[0].strip()
    return _first_line(error)


def _migrate(con) -> None:
    """Add the columns that newer versions write to a store created by an older one."""
    present = {row[0] for row in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
    for name in RUNTIME_COLUMNS:
        if name not in present:
            con.execute(f"ALTER TABLE runs ADD COLUMN {name} TEXT")


def default_store() -> Store:
    return Store()
