"""Compile the Gluon key pass (kernels/gluon_key_pass.py) for sm_90 without a GPU and print its resources.

Needs only a Triton with Gluon (the pinned series, kernels/key_pass_selection.py): no torch, no GPU, no
driver. Triton's wheel ships ptxas and cuobjdump, so this compiles to a cubin and reads registers, spills
and shared memory from it, plus what the PTX says about the overlap (asynchronous wgmma with one group
left in flight, ex2 count, setmaxnreg per partition).

    python3 -m venv /tmp/tri36 && /tmp/tri36/bin/pip install triton==3.6.0
    /tmp/tri36/bin/python benchmarks/gluon_compile_check.py            # the shipped config, both variants
    /tmp/tri36/bin/python benchmarks/gluon_compile_check.py --json out.json
Exit status 1 when a variant fails to compile (the error is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback

import source_tree  # noqa: E402,F401  (the repository and workbench_kernels on sys.path)
from cubin import cubin_resources  # noqa: E402

os.environ.pop("TRITON_INTERPRET", None)
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

# name -> launch constexprs (the shapes of benchmarks/NOTES.md: d = 128, bf16, causal, received + FAI)
VARIANTS = {
    "gluon_ws": {"PINGPONG": False},
    "gluon_ws_pingpong": {"PINGPONG": True},
}


def _signature(kernel, dtype: str, head_dim: int, block_m: int, constexprs: dict) -> dict:
    from triton.experimental.gluon import language as gl
    from workbench_kernels.gluon_key_pass import BLOCK_KEYS

    element = {"bf16": gl.bfloat16, "fp16": gl.float16}[dtype]
    q_layout = gl.NVMMASharedLayout.get_default_for([1, block_m, head_dim], element)
    k_layout = gl.NVMMASharedLayout.get_default_for([1, BLOCK_KEYS, head_dim], element)
    lse_layout = gl.NVMMASharedLayout.get_default_for([block_m], gl.float32)
    types = {
        "q_desc": f"tensordesc<{dtype}[1,{block_m},{head_dim}],{q_layout!r}>",
        "k_desc": f"tensordesc<{dtype}[1,{BLOCK_KEYS},{head_dim}],{k_layout!r}>",
        "lse_desc": f"tensordesc<fp32[{block_m}],{lse_layout!r}>",
        "Bias": "*fp32",
        "Received": "*fp32",
        "Fai": "*fp32",
        "qk_scale": "fp32",
    }
    return {name: "constexpr" if name in constexprs else types.get(name, "i32") for name in kernel.arg_names}


def compile_variant(name: str, *, dtype="bf16", head_dim=128, has_bias=False, causal=True) -> dict:
    from triton.experimental.gluon._runtime import GluonASTSource
    from workbench_kernels.gluon_key_pass import gluon_key_pass_kernel
    from workbench_kernels.key_pass_selection import gluon_launch_config

    config = gluon_launch_config(head_dim)
    constexprs = {
        "HEAD_DIM": head_dim,
        "BLOCK_M": config["BLOCK_M"],
        "STAGES": config["STAGES"],
        "CAUSAL": causal,
        "HAS_BIAS": has_bias,
        "RECEIVED": True,
        "FAI": True,
        "CONSUMER_REGS": config["CONSUMER_REGS"],
        "LOADER_REGS": config["LOADER_REGS"],
        **VARIANTS[name],
    }
    signature = _signature(gluon_key_pass_kernel, dtype, head_dim, config["BLOCK_M"], constexprs)
    source = GluonASTSource(gluon_key_pass_kernel, signature, constexprs)
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": config["num_warps"]}
    )
    ptx = compiled.asm["ptx"]
    report = {
        "variant": name,
        "dtype": dtype,
        "head_dim": head_dim,
        "bias": has_bias,
        "causal": causal,
        "config": config,
        "shared_bytes": compiled.metadata.shared,
        "num_warps": compiled.metadata.num_warps,
        **cubin_resources(compiled.asm["cubin"]),
        **_ptxas_report(ptx),
        "ptx_wgmma": len(re.findall(r"wgmma\.mma_async", ptx)),
        "ptx_wgmma_wait_1": len(re.findall(r"wgmma\.wait_group\.sync\.aligned\s+1;", ptx)),
        "ptx_ex2": len(re.findall(r"ex2\.approx", ptx)),
        "ptx_setmaxnreg": sorted(
            set(re.findall(r"setmaxnreg\.(?:inc|dec)\.sync\.aligned\.u32\s+(\d+)", ptx))
        ),
        "ptx_tma_loads": len(re.findall(r"cp\.async\.bulk\.tensor", ptx)),
    }
    return report


def _innermost(error: BaseException) -> str:
    """The first cause of a chained compile error (Triton wraps it once per jit call level)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def _ptxas_report(ptx: str) -> dict:
    """Spills and performance warnings from the bundled ptxas (-v) on the same PTX. C7514 means ptxas
    serialised the wgmmas (no overlap with anything): the property this kernel exists for."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        result = subprocess.run(
            [get_ptxas(90).path, "-v", "--gpu-name=sm_90a", path, "-o", os.path.join(tmp, "k.o")],
            capture_output=True,
            text=True,
        )
    text = result.stdout + result.stderr
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return {
        "spill_store_bytes": int(spills.group(1)) if spills else None,
        "spill_load_bytes": int(spills.group(2)) if spills else None,
        "wgmma_serialized_C7514": "C7514" in text,
        "ptxas_warnings": sorted(set(re.findall(r"\((C\d+)\)", text))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the reports to this file")
    parser.add_argument("--head-dims", default="128,64")
    args = parser.parse_args()
    print(f"triton {triton.__version__} (ptxas bundled with it), target sm_90", flush=True)
    from workbench_kernels.key_pass_selection import version_error

    mismatch = version_error(triton.__version__)
    if (
        mismatch
    ):  # compile anyway: the errors show what changed (3.9: tma.async_copy_global_to_shared removed)
        print(f"warning: {mismatch}", flush=True)
    reports, failed = [], False
    cases = [(name, d, False) for d in (int(x) for x in args.head_dims.split(",")) for name in VARIANTS]
    cases.append(("gluon_ws", int(args.head_dims.split(",")[0]), True))
    for name, head_dim, bias in cases:
        try:
            report = compile_variant(name, head_dim=head_dim, has_bias=bias)
        except Exception as error:
            failed = True
            report = {"variant": name, "head_dim": head_dim, "bias": bias, "error": _innermost(error)}
            if os.environ.get("GLUON_CHECK_TRACEBACK"):
                traceback.print_exc()
        reports.append(report)
        print(json.dumps(report), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"triton": triton.__version__, "reports": reports}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
