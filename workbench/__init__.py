"""Attention workbench: attention statistics, head tables and interventions for transformer models.

    import workbench as wb
    model = wb.load_model("smollm2-135m")
    capture = model.capture("The quick brown fox jumps over the lazy dog.")
    table = capture.head_table()
"""

import importlib

# name -> module that defines it. Imported on first use (PEP 562), so that ``import workbench.cli`` and
# ``workbench --help`` do not pay for torch and transformers.
_EXPORTS = {
    "Capture": "workbench.capture",
    "CaptureError": "workbench.seam.attention",
    "instrument": "workbench.seam.attention",
    "CaptureSpec": "workbench.seam.spec",
    "SpecError": "workbench.seam.spec",
    "Generation": "workbench.runners.hf",
    "InputError": "workbench.runners.hf",
    "Model": "workbench.runners.hf",
    "load_model": "workbench.runners.hf",
    **{
        name: "workbench.seam.interventions"
        for name in (
            "HeadGate",
            "HeadOutputAffine",
            "HeadOutputReplace",
            "Intervention",
            "LogitBias",
            "ProbabilityEdit",
            "ScaleKeys",
            "UniformAttention",
            "interventions_from_json",
            "interventions_to_json",
            "mask_heads",
        )
    },
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "Capture",
    "CaptureError",
    "CaptureSpec",
    "Generation",
    "HeadGate",
    "HeadOutputAffine",
    "HeadOutputReplace",
    "InputError",
    "Intervention",
    "LogitBias",
    "Model",
    "ProbabilityEdit",
    "ScaleKeys",
    "SpecError",
    "UniformAttention",
    "instrument",
    "interventions_from_json",
    "interventions_to_json",
    "load_model",
    "mask_heads",
]
