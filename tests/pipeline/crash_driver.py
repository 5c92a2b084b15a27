"""Run a pipeline in this process and SIGKILL it at the Nth store write of this process.

    python crash_driver.py PIPELINE.yaml OUT N PHASE      PHASE: before | staged | after | never

``before``: just before the write; ``staged``: after the run's files are renamed into place but before
the index transaction; ``after``: just after the write returned. Used by test_resume.py.
"""

import os
import signal
import sys

import torch

from workbench.store.store import Store

torch.set_num_threads(1)
file, out, target, phase = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
state = {"calls": 0, "armed": False}
put_run, connect = Store.put_run, Store._connect


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def put_run_then_maybe_die(self, *args, **kwargs):
    state["calls"] += 1
    hit = state["calls"] == target
    if hit and phase == "before":
        die()
    state["armed"] = hit and phase == "staged"
    try:
        run_id = put_run(self, *args, **kwargs)
    finally:
        state["armed"] = False
    if hit and phase == "after":
        die()
    return run_id


def connect_or_die(self, read_only=False):
    if state["armed"] and not read_only:  # the files are in place; the index transaction comes next
        die()
    return connect(self, read_only)


Store.put_run = put_run_then_maybe_die
Store._connect = connect_or_die

from workbench.pipeline import load_pipeline, run_pipeline  # noqa: E402

result = run_pipeline(load_pipeline(file, out=out), echo=print)
print("finished", state["calls"], "writes")
