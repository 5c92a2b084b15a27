"""``workbench app``: serve the Streamlit dashboard over the results store on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import app
from workbench.cli.common import DEFAULT_DEVICE, DEFAULT_DTYPE, Device, Dtype, friendly, runtime


def app_script() -> Path:
    """The dashboard's ``main.py``: from the installed ``workbench_dashboard`` package (the folder ``app/``,
    mapped by setup.py, so a wheel carries it), else ``app/`` beside an uninstalled source tree."""
    import importlib.util

    import workbench

    spec = importlib.util.find_spec("workbench_dashboard")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    folders.append(Path(workbench.__file__).resolve().parent.parent / "app")  # source tree on PYTHONPATH
    for folder in folders:
        script = Path(folder) / "main.py"
        if script.exists():
            return script
    raise FileNotFoundError(
        "the dashboard is not installed: reinstall the workbench (`pip install .`, or `make install`), "
        "which installs app/ as the package workbench_dashboard"
    )


def streamlit_command(script: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]


@app.command("app")
@friendly
def serve_app(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port to serve on")] = 8501,
    host: Annotated[
        str, typer.Option("--host", help="address to bind (default loopback only; 0.0.0.0 exposes it)")
    ] = "127.0.0.1",
    results: Annotated[
        Path | None,
        typer.Option("--results", help="store to read (default $WORKBENCH_RESULTS, else ./results)"),
    ] = None,
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Serve the dashboard (runs, head grids, attention maps, analyses) over the results store."""
    from workbench import paths
    from workbench.devices import ENV_DEVICE, ENV_DTYPE

    runtime(device, dtype)  # checked here; the dashboard's model runs (exact tiles, comparisons) resolve it again
    script = app_script()
    store = (results or paths.results_dir()).expanduser().resolve()
    env = {**os.environ, "WORKBENCH_RESULTS": str(store), ENV_DEVICE: device, ENV_DTYPE: dtype}
    if not (store / "workbench.duckdb").exists():
        typer.echo(f"note: the store {store} is empty; run `make demo` to fill it", err=True)
    typer.echo(f"dashboard on http://{host}:{port} (store {store}); Ctrl-C stops it", err=True)
    # replace this process with the server, so a signal to `workbench app` reaches Streamlit itself
    command = streamlit_command(script, host, port)
    os.execve(command[0], command, env)
