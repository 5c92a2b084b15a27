"""The key pass's fallback chain (kernels/key_pass_selection.py): every link chooses and says why.

The chain runs on CPU: each probe (Triton import, version, Gluon import, device capability, ptxas) is
replaced in turn, so a machine without a GPU checks every branch. The Gluon kernel itself is checked
against the float64 reference in test_gluon_key_pass.py (GPU, sm_90).
"""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from workbench_kernels import api as kernels
from workbench_kernels import key_pass_selection as selection

CUDA = torch.device("cuda")  # a device object only: nothing here touches a GPU


@pytest.fixture
def hopper(monkeypatch):
    """Every probe says yes (Triton 3.6.0, Gluon imports, sm_90, ptxas 12.8); tests then break one link."""
    monkeypatch.setattr(selection, "triton_import_error", lambda: None)
    monkeypatch.setattr(selection, "triton_version", lambda: "3.6.0")
    monkeypatch.setattr(selection, "gluon_import_error", lambda: None)
    monkeypatch.setattr(selection, "device_capability", lambda device: (9, 0))
    monkeypatch.setattr(selection, "toolchain_error", lambda: None)
    monkeypatch.delenv(selection.PREFERENCE_ENV, raising=False)
    selection.clear_launch_failures()
    yield
    selection.clear_launch_failures()


def bf16_inputs(head_dim=128, q_len=16, k_len=16):
    q = torch.zeros(1, 4, q_len, head_dim, dtype=torch.bfloat16)
    k = torch.zeros(1, 2, k_len, head_dim, dtype=torch.bfloat16)
    return q, k


def test_all_links_allow_it_only_when_asked(hopper):
    default = selection.choose(CUDA)
    assert default.name == selection.TRITON
    assert "opt-in" in default.reason and "available" in default.reason
    with selection.preference("gluon"):
        chosen = selection.choose(CUDA)
    assert chosen.name == selection.GLUON and chosen.reason
    assert chosen.as_dict() == {"name": selection.GLUON, "reason": chosen.reason}


def test_environment_variable_asks_for_gluon(hopper, monkeypatch):
    monkeypatch.setenv(selection.PREFERENCE_ENV, "gluon")
    assert selection.choose(CUDA).name == selection.GLUON
    monkeypatch.setenv(selection.PREFERENCE_ENV, "fast")
    with pytest.raises(ValueError, match="WORKBENCH_KEY_PASS='fast'"):
        selection.choose(CUDA)


def test_no_cuda_runs_the_interpreter_or_the_reference(hopper, monkeypatch):
    q = torch.zeros(1, 2, 8, 32)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with selection.preference("gluon"):
        path = selection.choose(q=q, k=q)
    assert path.name == selection.INTERPRETER and "interpreter" in path.reason
    monkeypatch.delenv("TRITON_INTERPRET")
    with selection.preference("gluon"):
        path = selection.choose(q=q, k=q)
    assert path.name == selection.REFERENCE and "no CUDA device" in path.reason
    bf16 = q.to(torch.bfloat16)
    assert selection.choose(q=bf16, k=bf16).name == selection.REFERENCE


def test_no_cuda_device_at_all(hopper, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    path = kernels.key_pass_path()
    assert path.name == selection.REFERENCE and "CPU" in path.reason


def test_triton_missing_runs_the_reference(hopper, monkeypatch):
    monkeypatch.setattr(
        selection, "triton_import_error", lambda: "Triton does not import (ImportError: gone)"
    )
    with selection.preference("gluon"):
        path = selection.choose(CUDA)
    assert path.name == selection.REFERENCE and "ImportError: gone" in path.reason


@pytest.mark.parametrize("version", ["3.5.1", "3.9.0", "4.0.0"])
def test_other_triton_versions_fall_back_with_the_version(hopper, monkeypatch, version):
    monkeypatch.setattr(selection, "triton_version", lambda: version)
    with selection.preference("gluon"):
        path = selection.choose(CUDA)
    assert path.name == selection.TRITON
    assert version in path.reason and selection.GLUON_TRITON_SERIES in path.reason


@pytest.mark.parametrize("version", ["3.6.0", "3.6.1", "3.6.0+git1234abcd"])
def test_the_pinned_series_passes(version):
    assert selection.version_error(version) is None


def test_the_local_triton_is_judged_by_its_real_version():
    import triton

    expected_ok = triton.__version__.startswith(selection.GLUON_TRITON_SERIES + ".")
    assert (selection.version_error(triton.__version__) is None) == expected_ok


def test_gluon_import_failure_falls_back_with_the_error(hopper, monkeypatch):
    """A real failed import: the Gluon package hidden from the import system."""
    monkeypatch.undo()  # the real probe, not the fixture's stub
    monkeypatch.setattr(selection, "triton_version", lambda: "3.6.0")
    monkeypatch.setattr(selection, "device_capability", lambda device: (9, 0))
    monkeypatch.setattr(selection, "toolchain_error", lambda: None)
    monkeypatch.setitem(sys.modules, "triton.experimental.gluon", None)
    monkeypatch.setitem(sys.modules, "triton.experimental.gluon.language", None)
    selection.gluon_import_error.cache_clear()
    try:
        with selection.preference("gluon"):
            path = selection.choose(CUDA)
    finally:
        selection.gluon_import_error.cache_clear()
    assert path.name == selection.TRITON
    assert "Gluon's Hopper API does not import" in path.reason and "ModuleNotFoundError" in path.reason


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (10, 0), (12, 0)])
def test_devices_other_than_sm90_fall_back(hopper, monkeypatch, capability):
    monkeypatch.setattr(selection, "device_capability", lambda device: capability)
    with selection.preference("gluon"):
        path = selection.choose(CUDA)
    assert path.name == selection.TRITON
    assert f"sm_{capability[0]}{capability[1]}" in path.reason and "sm_90" in path.reason


def test_old_ptxas_falls_back(hopper, monkeypatch):
    monkeypatch.setattr(selection, "toolchain_error", lambda: "ptxas 12.1 is older than 12.3")
    with selection.preference("gluon"):
        path = selection.choose(CUDA)
    assert path.name == selection.TRITON and "ptxas 12.1" in path.reason


def test_the_default_path_reports_why_gluon_is_unavailable(hopper, monkeypatch):
    monkeypatch.setattr(selection, "device_capability", lambda device: (8, 0))
    path = selection.choose(CUDA)
    assert path.name == selection.TRITON and "unavailable" in path.reason and "sm_80" in path.reason


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: tuple(x.float() for x in bf16_inputs()), "float32"),
        (lambda: bf16_inputs(head_dim=96), "head dim 96"),
        (lambda: bf16_inputs(head_dim=256), "head dim 256"),
    ],
)
def test_calls_the_kernel_does_not_cover_fall_back(hopper, make, expected):
    q, k = make()
    with selection.preference("gluon"):
        path = selection.choose(CUDA, q=q, k=k)
    assert path.name == selection.TRITON and expected in path.reason


def test_pooled_map_and_strides_fall_back(hopper):
    q, k = bf16_inputs()
    with selection.preference("gluon"):
        assert "pooled map" in selection.choose(CUDA, q=q, k=k, pooled_cells=64).reason
        odd = torch.zeros(1, 4, 16, 129, dtype=torch.bfloat16)[..., :128]  # row stride 129 elements
        path = selection.choose(CUDA, q=odd, k=k)
        assert path.name == selection.TRITON and "TMA" in path.reason
        assert selection.choose(CUDA, q=q, k=k).name == selection.GLUON


def test_a_launch_failure_is_recorded_warned_once_and_remembered(hopper):
    q, k = bf16_inputs()
    with pytest.warns(UserWarning, match="Gluon key pass failed"):
        path = selection.record_launch_failure(q, RuntimeError("PTX too new for the driver"))
    assert path.name == selection.TRITON and "PTX too new" in path.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selection.record_launch_failure(q, RuntimeError("again"))  # no second warning
    with selection.preference("gluon"):
        path = selection.choose(CUDA, q=q, k=k)
    assert path.name == selection.TRITON and "failed earlier" in path.reason and "again" in path.reason


def test_api_records_the_path_of_each_call(monkeypatch):
    if torch.cuda.is_available():  # Triton there already runs compiled: the interpreter cannot be switched on
        pytest.skip("the interpreter and reference paths of a CPU machine")  # (InterpreterError, GPU 2026-12-07)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    q = torch.randn(1, 2, 20, 32)
    lse = torch.logsumexp(torch.randn(1, 2, 20, 20), -1)
    kernels.key_statistics(q, q[:, :1], lse, scaling=0.2)
    assert kernels.last_key_pass_path().name == selection.INTERPRETER
    kernels.key_statistics(q.to(torch.bfloat16), q[:, :1].to(torch.bfloat16), lse, scaling=0.2)
    path = kernels.last_key_pass_path()
    assert path.name == selection.REFERENCE and "bf16" in path.reason


def test_api_falls_back_to_triton_when_the_gluon_launch_fails(hopper, monkeypatch):
    """The whole api path: chooser says Gluon, the launch raises, the Triton kernel (here under the
    interpreter) computes the statistics, and the record says so."""
    import workbench_kernels.gluon_key_pass as gluon_module

    if "TRITON_INTERPRET" not in __import__("os").environ:
        pytest.skip("needs the Triton interpreter (a CPU machine) to run the fallback kernel")

    def boom(*args, **kwargs):
        raise RuntimeError("simulated Gluon compile failure")

    monkeypatch.setattr(selection, "choose", lambda **kw: selection.KeyPassPath(selection.GLUON, "test"))
    monkeypatch.setattr(gluon_module, "gluon_key_statistics_launch", boom)
    q = torch.randn(1, 2, 20, 32)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, q[:, :1].expand(-1, 2, -1, -1)) * 0.2
    causal = torch.ones(20, 20, dtype=torch.bool).tril()
    lse = torch.logsumexp(scores.masked_fill(~causal, float("-inf")), -1)
    with pytest.warns(UserWarning, match="simulated Gluon compile failure"):
        results = kernels.key_statistics(q, q[:, :1], lse, scaling=0.2)
    path = kernels.last_key_pass_path()
    assert path.name == selection.TRITON and "simulated Gluon compile failure" in path.reason
    # Row-normalised probabilities: the received masses sum to the number of rows.
    assert torch.allclose(results["received"].sum(-1), torch.full((1, 2), 20.0), rtol=1e-4)
