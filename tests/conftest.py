import inspect
import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton reads this when a @triton.jit decorator runs; set it before any test module imports kernels
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny():
    import workbench as wb

    return wb.load_model("tiny-gqa")


def smollm2_available() -> bool:
    from workbench.models.registry import smollm2_dir

    if (smollm2_dir() / "model.safetensors").exists():
        return True
    try:
        from workbench.models.convert import smollm2_gguf

        smollm2_gguf()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def smollm2():
    if not smollm2_available():
        pytest.skip("embedded SmolLM2 not installed (run `make setup`)")
    import workbench as wb

    return wb.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def sample_text():
    from workbench.analyses.demo import sample_text

    return sample_text()


@pytest.fixture()
def run_driver():
    """Run ``benchmarks/SCRIPT`` with its arguments in a fresh interpreter; fail with its stderr unless it
    exits 0; return the finished process (stdout for the caller's checks)."""
    import subprocess

    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"

    def run(script: str, *args) -> subprocess.CompletedProcess:
        command = [sys.executable, str(benchmarks / script), *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    return run


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    from workbench.store import Store

    return Store(tmp_path / "results")


@pytest.fixture()
def put_runs(monkeypatch):
    """Every ``Store.put_run`` call as (kind, calling module, calling function)."""
    from workbench.store.store import Store

    calls = []
    put_run = Store.put_run

    def counting(self, kind, *args, **kwargs):
        caller = inspect.stack()[1]
        calls.append((kind, caller.frame.f_globals["__name__"], caller.function))
        return put_run(self, kind, *args, **kwargs)

    monkeypatch.setattr(Store, "put_run", counting)
    return calls
