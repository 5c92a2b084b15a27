"""``python -m workbench.cli ...``: the CLI without an installed ``workbench`` script (GPU machines that
run from a checkout, ``source benchmarks/gpu_env.sh``)."""

from workbench.cli import app

app(prog_name="workbench")
