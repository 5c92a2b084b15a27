"""Old import paths (``workbench.vision.*``), kept as aliases of the modules' new homes.

The vision code lives in the layers now: ``workbench.adapters.vit``, ``workbench.runners.vision``,
``workbench.models.vision`` and ``workbench.models.dinov2``, ``workbench.analyses.binding``. The tiny-ViT
training is a tool outside the library (``tools/train_tiny_vit.py``).
"""

from __future__ import annotations

import importlib
import sys

MOVED = {
    "adapter": "workbench.adapters.vit",
    "runner": "workbench.runners.vision",
    "models": "workbench.models.vision",
    "convert": "workbench.models.dinov2",
    "binding": "workbench.analyses.binding.analysis",
    "probes": "workbench.analyses.binding.probes",
    "subspace": "workbench.analyses.binding.subspace",
    "scenes": "workbench.analyses.binding.scenes",
}

for _old, _new in MOVED.items():
    sys.modules[f"{__name__}.{_old}"] = importlib.import_module(_new)
    globals()[_old] = sys.modules[f"{__name__}.{_old}"]
