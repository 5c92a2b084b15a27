"""The seam's kernel path (Triton: on CUDA, else under the CPU interpreter) gives the same capture as the
exact PyTorch path, and interventions that the kernels serve (logit bias, uniform heads, gates)
give the same logits."""

import os

import pytest
import torch

import workbench as wb
from workbench.seam.spec import ROW_STATISTICS

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # kernels compile lazily, so this still takes effect

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
    reason="needs CUDA or TRITON_INTERPRET=1",
)

SPEC = wb.CaptureSpec(
    statistics=ROW_STATISTICS,  # every row statistic, as the kernels define them
    key_statistics=("received", "fai"),
    span=(2, 7),
    pooled_cells=8,
)


def run(model, ids, interventions, use_kernels):
    with torch.no_grad(), wb.instrument(model.hf, SPEC, interventions, use_kernels=use_kernels) as session:
        logits = model.hf(input_ids=ids, use_cache=False).logits
    return logits, wb.Capture.from_records(model.shape, session.records)


@pytest.mark.parametrize(
    "interventions",
    [[], [wb.LogitBias(1, 2, keys=(0,), bias=1.5), wb.UniformAttention(0, 1), wb.HeadGate(1, 3, gate=0.0)]],
    ids=["plain", "interventions"],
)
def test_kernel_path_matches_torch_path(tiny, interventions):
    # the model loads on CUDA where there is one (device auto); encode gives CPU ids (GPU run 2026-12-07)
    ids = tiny.encode("Kernels and the exact path must agree on all statistics.").to(tiny.device)
    torch_logits, torch_capture = run(tiny, ids, interventions, use_kernels=False)
    kernel_logits, kernel_capture = run(tiny, ids, interventions, use_kernels="always")
    torch.testing.assert_close(kernel_logits, torch_logits, rtol=1e-4, atol=1e-4)
    for name in SPEC.statistics:
        if name == "argmax":
            continue
        torch.testing.assert_close(
            kernel_capture.row[name], torch_capture.row[name], rtol=1e-4, atol=1e-4, msg=name
        )
    for name in SPEC.key_statistics:
        torch.testing.assert_close(
            kernel_capture.key[name], torch_capture.key[name], rtol=1e-4, atol=1e-4, msg=name
        )
    torch.testing.assert_close(kernel_capture.pooled, torch_capture.pooled, rtol=1e-4, atol=1e-5)


def test_a_capture_whose_key_pass_ran_gluon_records_it(tiny, monkeypatch):
    """The opt-in Gluon key pass (Hopper) is named in the layer's backend, so a stored run says which ran."""
    from workbench_kernels.key_pass_selection import KeyPassPath

    from workbench.seam import cuda_path

    monkeypatch.setattr(cuda_path._kernels, "last_key_pass_path", lambda: KeyPassPath("gluon-hopper", "test"))
    ids = tiny.encode("The key pass names itself.").to(tiny.device)
    with torch.no_grad(), wb.instrument(tiny.hf, SPEC, [], use_kernels="always") as session:
        tiny.hf(input_ids=ids, use_cache=False)
    assert session.backend() == "triton+gluon-hopper"


def test_env_names_the_key_pass():
    from workbench.env import environment

    key_pass = environment()["key_pass"]
    assert set(key_pass) == {"name", "reason"} and key_pass["name"] in {
        "gluon-hopper",
        "triton",
        "triton-interpreter",
        "reference",
    }
