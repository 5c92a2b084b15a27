"""The worker pool the GPU drivers share (lofit_gpu.py, calibration_gpu.py, duo_gpu.py).

Each job runs as ``python SCRIPT <the driver's own arguments> --worker JSON`` in its own process (a 135M
model leaves one GPU mostly idle, so several share it), at most ``workers`` at a time, with 2 CPU threads
each unless OMP_NUM_THREADS says otherwise. Every ``poll_s`` seconds ``tick()`` runs (the drivers merge
the workers' unit files into results.json there), so a run cut by a timeout keeps what finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def run_workers(
    script: str | Path,
    forwarded: Sequence[str],
    jobs: Sequence[dict],
    *,
    workers: int,
    poll_s: float,
    tick: Callable[[], object],
    label: Callable[[dict], str] = str,
) -> None:
    """Run ``jobs`` through ``script --worker JSON``; say which worker exited with an error."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            command = [sys.executable, str(Path(script).resolve()), *forwarded, "--worker", json.dumps(job)]
            running.append((job, subprocess.Popen(command, env=env)))
        time.sleep(poll_s)
        for job, process in list(running):
            if process.poll() is not None:
                running.remove((job, process))
                if process.returncode:
                    print(f"worker {label(job)} exited with {process.returncode}", flush=True)
        tick()
