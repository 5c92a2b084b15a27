"""``python -m workbench.cli ...`` = ``workbench ...`` (for source trees that are not installed, e.g. the GPU runs)."""

from workbench.cli import app

app(prog_name="workbench")
