from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
APP = HERE.parents[1] / "app"
MAIN = APP / "main.py"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(APP))  # the pages import workbench_app; `streamlit run` adds app/ itself


@pytest.fixture(scope="session")
def app_store(tmp_path_factory) -> tuple[Path, dict]:
    """A store of tiny-gqa runs, one per page (see store_fixture.py)."""
    from store_fixture import build_store

    reuse = os.environ.get("WORKBENCH_APP_TEST_STORE")  # a store built earlier by store_fixture.py (dev loop)
    if reuse:
        return Path(reuse), json.loads((Path(reuse) / "fixture-ids.json").read_text())
    root = tmp_path_factory.mktemp("app-store") / "results"
    ids = build_store(root, root.parent / "work")
    return root, ids


@pytest.fixture
def store(app_store, monkeypatch) -> tuple[Path, dict]:
    root, ids = app_store
    monkeypatch.setenv("WORKBENCH_RESULTS", str(root))
    return root, ids


@pytest.fixture
def broken_store(app_store, tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A copy of the store that the test may damage."""
    root, ids = app_store
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    import duckdb

    with duckdb.connect(str(copy / "workbench.duckdb")) as con:  # the copy's index points at the copy
        con.execute("UPDATE runs SET path = replace(path, ?, ?)", [str(root), str(copy)])
    monkeypatch.setenv("WORKBENCH_RESULTS", str(copy))
    return copy, ids
