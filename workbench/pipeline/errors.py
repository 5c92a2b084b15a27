"""The one error a pipeline raises for a bad file or a bad step: the CLI prints it as one line."""

from __future__ import annotations

from workbench.seam.spec import SpecError


class PipelineError(SpecError):
    """A pipeline or sweep file that cannot run; raised before any step starts. The message says why."""
