"""Installed as a wheel (``pip install .``, not editable) into a fresh venv, the workbench works from any folder:
``workbench binding tiny-vit-...``, ``workbench app`` and ``workbench demo`` find their checkpoints, dashboard,
pipeline and data inside the installed package, never in this checkout.

To keep it quick the new venv reuses this venv's installed dependencies (a ``.pth`` line naming its
site-packages, placed after the venv's own, so nothing of this checkout's editable install is seen) and
installs only the built wheel, with ``--no-deps``; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "workbench", "kernels", "app")

pytestmark = pytest.mark.wheel


def _run(command, cwd, env, timeout=600):
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, environment, a work folder outside any project) with the wheel installed."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for name in SOURCES:
        path = ROOT / name
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, source / name, **({"ignore": ignore} if path.is_dir() else {}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    started = time.monotonic()
    # this venv's setuptools builds it (no download); without one, pip fetches it into an isolated build env
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(base / "dist"), str(source)], base, env)
    wheel = next((base / "dist").glob("attention_workbench-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env).stdout.strip())
    (site / "zz_reuse_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)], base, env)
    work = base / "elsewhere"
    work.mkdir()
    env = {**env, "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "WORKBENCH_RESULTS": str(work / "results")}
    where = json.loads(
        _run([str(python), "-c", "import json, workbench, workbench_kernels.api as k, workbench_dashboard as d; "
              "print(json.dumps([workbench.__file__, k.__file__, list(d.__path__)]))"], work, env).stdout
    )
    for path in (where[0], where[1], where[2][0]):  # the wheel's files, not this checkout's
        assert Path(path).resolve().is_relative_to(site), path
    print(f"wheel built and installed in {time.monotonic() - started:.1f} s")
    return venv / "bin", env, work


def test_binding_on_a_shipped_tiny_vit(installed):
    bin_dir, env, work = installed
    done = _run(
        [str(bin_dir / "workbench"), "binding", "tiny-vit-mae-s0", "--out", "binding", "--scenes", "8", "--epochs", "1",
         "--layers", "0,6", "--probes", "quadratic", "--head-scenes", "2", "--ranks", "2", "--no-baselines"],
        work,
        env,
    )
    assert (work / "binding" / "probes.parquet").exists() and (work / "binding" / "summary.json").exists(), done.stdout
    runs = _run([str(bin_dir / "workbench"), "runs", "--json"], work, env)
    assert '"binding"' in runs.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_app_serves_and_renders(installed):
    bin_dir, env, work = installed
    check = (
        "from streamlit.testing.v1 import AppTest\n"
        "from workbench.cli.dashboard import app_script\n"
        "script = app_script(); import workbench_dashboard as d\n"
        "assert str(script).startswith(d.__path__[0]), script\n"
        "at = AppTest.from_file(str(script), default_timeout=120).run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "print('rendered', script)\n"
    )
    _run([str(bin_dir / "python"), "-c", check], work, env)
    port = _free_port()
    server = subprocess.Popen([str(bin_dir / "workbench"), "app", "--port", str(port)], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not answer within 120 s"
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _smollm2_available() -> bool:
    """As tests/conftest.py decides (imported by name, a conftest of another folder could answer)."""
    from workbench.models.convert import MissingWeightsError, smollm2_gguf
    from workbench.models.registry import smollm2_dir

    if (smollm2_dir() / "model.safetensors").exists():
        return True
    try:
        smollm2_gguf()
        return True
    except MissingWeightsError:
        return False


def test_demo(installed):
    if not _smollm2_available():
        pytest.skip("embedded SmolLM2 not installed (run `make setup`)")
    bin_dir, env, work = installed
    _run([str(bin_dir / "workbench"), "demo"], work, env, timeout=1500)
    assert (work / "results" / "demo" / "report.html").exists() or list(work.rglob("report.html"))
