"""Execute every notebook in notebooks/ with nbclient (kernel python3 of this interpreter) and report the
time each takes. The notebooks use the embedded SmolLM2 on CPU. Times go to test-artifacts/notebooks.json."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TIMES = REPO / "test-artifacts" / "notebooks.json"


def ensure_kernel() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True)


def test_notebooks_are_stored_without_outputs():
    import nbformat

    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, (
                    f"{path.name} has outputs: strip them"
                )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch, smollm2):
    import nbformat
    from nbclient import NotebookClient

    ensure_kernel()
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    notebook = nbformat.read(path, as_version=4)
    work = tmp_path / "work"  # the kernel's cwd; ../pipelines resolves as from notebooks/
    work.mkdir()
    (tmp_path / "pipelines").symlink_to(REPO / "pipelines")
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(work)}}
    )
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    TIMES.parent.mkdir(exist_ok=True)
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    times[path.name] = round(seconds, 1)
    TIMES.write_text(json.dumps(times, indent=1, sort_keys=True))
    print(f"\n{path.name}: {seconds:.1f} s")
