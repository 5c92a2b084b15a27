"""Scripted head-selection pipelines: a YAML file of steps (capture, analyses, select, validate, report)
run step by step, each step recorded in the store so a re-run or a resumed run skips finished work.

    from workbench.pipeline import load_pipeline, run_pipeline
    result = run_pipeline(load_pipeline("pipelines/demo.yaml"))
    result.heads        # the selected heads (also in <out>/HEADS.json), report in <out>/report.html
"""

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.registry import StepEntry, known_steps, register_step
from workbench.pipeline.spec import PipelineSpec, load_pipeline, parse_pipeline

__all__ = [
    "PipelineError",
    "PipelineResult",
    "PipelineSpec",
    "StepEntry",
    "known_steps",
    "load_pipeline",
    "parse_pipeline",
    "register_step",
    "run_pipeline",
    "run_step",
]


def __getattr__(name: str):
    """The runner (which imports the store, DuckDB and pandas) on first use: the CLI imports Step options."""
    if name in ("PipelineResult", "run_pipeline", "run_step", "write_run"):
        from workbench.pipeline import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'workbench.pipeline' has no attribute {name!r}")
