"""Attention workbench: attention statistics, head tables and interventions for transformer models.

    import workbench as wb
    model = wb.load_model("smollm2-135m")
    capture = model.capture("The quick brown fox jumps over the lazy dog.")
    table = capture.head_table()
"""

from workbench.capture import Capture
from workbench.runners.hf import Generation, InputError, Model, load_model
from workbench.seam.attention import CaptureError, instrument
from workbench.seam.interventions import (
    HeadGate,
    HeadOutputAffine,
    HeadOutputReplace,
    Intervention,
    LogitBias,
    ProbabilityEdit,
    ScaleKeys,
    UniformAttention,
    interventions_from_json,
    interventions_to_json,
    mask_heads,
)
from workbench.seam.spec import CaptureSpec, SpecError

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
