"""Object binding in a ViT: IsSameObject probes per layer, the binding subspace and its ablation, head AUROC.

``run_binding(model, BindingConfig(...))`` (``analysis.py``) on a ``workbench.runners.vision.VisionModel``;
``probes.py`` (pair sampling, probes, metrics), ``subspace.py`` (the binding subspace, its ablation as a
``ResidualProjection``), ``scenes.py`` (the procedural scenes with exact instance masks).
"""

from workbench.analyses.binding.analysis import (
    TEST_SEED,
    TRAIN_SEED,
    BindingConfig,
    BindingResult,
    extract,
    head_auroc,
    run_binding,
)

__all__ = ["TEST_SEED", "TRAIN_SEED", "BindingConfig", "BindingResult", "extract", "head_auroc", "run_binding"]
