"""Run a pipeline in this process and SIGKILL it right after its Nth finished unit (one NIAH run) is kept.

    python unit_crash_driver.py PIPELINE.yaml OUT N

Used by test_resume.py (resuming inside a step).
"""

import os
import signal
import sys

import torch

from workbench.checkpoint import UnitLog

torch.set_num_threads(1)
file, out, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
state = {"units": 0}
add = UnitLog.add


def add_then_maybe_die(self, unit, record):
    add(self, unit, record)
    state["units"] += 1
    if state["units"] == target:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


UnitLog.add = add_then_maybe_die

from workbench.pipeline import load_pipeline, run_pipeline  # noqa: E402

run_pipeline(load_pipeline(file, out=out), echo=print)
print("finished", state["units"], "units")
