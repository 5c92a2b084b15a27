"""Attention workbench: attention statistics, head tables and interventions for transformer models.

    import workbench as wb
    model = wb.load_model("smollm2-135m")
    capture = model.capture("The quick brown fox jumps over the lazy dog.")
    table = capture.head_table()

Also exported: the TransformerLens and nnsight runners (``LensRunner``, ``NNsightRunner``), the figures of
``workbench.plots`` (``head_heatmap``, ``pooled_map``, ``attention_pattern``, ``notebook_figures``) and
``read_texts`` (a file or a folder of ``*.txt`` for ``model.capture``).
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
    "LensRunner": "workbench.runners.lens",
    "NNsightRunner": "workbench.runners.nnsight",
    "read_texts": "workbench.texts",
    **{name: "workbench.plots" for name in ("attention_pattern", "head_heatmap", "notebook_figures", "pooled_map")},
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
    "LensRunner",
    "LogitBias",
    "Model",
    "NNsightRunner",
    "ProbabilityEdit",
    "ScaleKeys",
    "SpecError",
    "UniformAttention",
    "attention_pattern",
    "head_heatmap",
    "instrument",
    "interventions_from_json",
    "interventions_to_json",
    "load_model",
    "mask_heads",
    "notebook_figures",
    "pooled_map",
    "read_texts",
]
