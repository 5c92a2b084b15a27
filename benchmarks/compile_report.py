"""Compile the kernels for an H100 (sm_90) on a machine without a GPU and print ptxas's resource report.

Registers, spills and shared memory per config answer most tuning questions before any GPU time is
spent (benchmarks/NOTES.md). Uses a stand-in driver that only names the target; nothing is launched.

    python benchmarks/compile_report.py            # the shipped configs
    python benchmarks/compile_report.py --sweep    # a few alternatives per kernel
"""

from __future__ import annotations

import argparse
import os

import source_tree  # noqa: E402,F401  (the repository and workbench_kernels on sys.path)
from cubin import cubin_resources  # noqa: E402

os.environ.pop("TRITON_INTERPRET", None)
import torch  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime.driver import driver  # noqa: E402


class _TargetOnlyDriver:
    """Enough of a driver for JITFunction.warmup: a device id, a stream id and the target."""

    def __init__(self, capability: int = 90):
        self.target = GPUTarget("cuda", capability, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("cpu")


def _resource_report(cubin: bytes) -> str:
    """Registers, spills and stack of the compiled kernel, read by cuobjdump from the cubin."""
    found = cubin_resources(cubin)
    if found["registers"] is None:
        return "resource usage unavailable"
    return f"regs={found['registers']} stack={found['stack']} local={found['local']}"


def _compile(launch, config_kernel: str, config: dict):
    """Run ``launch`` with warmup-only kernels; returns the compiled kernel objects."""
    from workbench_kernels import configs

    compiled = []
    originals = {}
    import workbench_kernels.attention_forward as fwd
    import workbench_kernels.key_statistics_pass as key
    import workbench_kernels.probability_tiles as tile

    for module, name in (
        (fwd, "attention_forward_kernel"),
        (key, "key_statistics_kernel"),
        (key, "pooled_mean_kernel"),
        (tile, "probability_tile_kernel"),
    ):
        jit = getattr(module, name)
        originals[(module, name)] = jit

        class _Warm:
            def __init__(self, jit):
                self.jit = jit

            def __getitem__(self, grid):
                def run(*args, **kwargs):
                    compiled.append(self.jit.warmup(*args, grid=grid, **kwargs))

                return run

        setattr(module, name, _Warm(jit))
    try:
        with configs.override(config_kernel, **config):
            launch()
    finally:
        for (module, name), jit in originals.items():
            setattr(module, name, jit)
    return compiled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--forward-only", action="store_true")
    args = parser.parse_args()
    driver.set_active(_TargetOnlyDriver())
    from workbench_kernels.api import ROW_STATISTICS
    from workbench_kernels.attention_forward import attention_forward
    from workbench_kernels.configs import forward_config, key_config
    from workbench_kernels.key_statistics_pass import key_statistics_launch

    d = args.head_dim
    q = torch.empty(1, 32, 4096, d, dtype=torch.bfloat16)
    k = torch.empty(1, 8, 4096, d, dtype=torch.bfloat16)
    lse = torch.empty(1, 32, 4096)
    all_stats = ROW_STATISTICS
    cuda = torch.device("cuda")
    fwd_configs = [
        forward_config(d, torch.bfloat16, cuda, True),
        forward_config(d, torch.bfloat16, cuda, False),
    ]
    fwd_configs.append(dict(fwd_configs[0], ARGMAX_BRANCH=True))
    # round 4 (fewer ALU operations per score): the tensor-core variants on the shipped statistics tiles
    fwd_configs.append(dict(fwd_configs[0], DISTANCE_MMA=True))
    fwd_configs.append(dict(fwd_configs[0], ROWSUM_MMA=True))
    fwd_configs.append(dict(fwd_configs[0], ROWSUM_MMA=True, num_stages=2))
    key_configs = [key_config(d, torch.bfloat16, cuda)]
    if args.sweep:
        fwd_configs += [
            {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
            {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
            {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
        ]
        key_configs += [
            {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 3},
            {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
            {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
        ]
    for config in fwd_configs:
        variant = any(config.get(name) for name in ("ARGMAX_BRANCH", "DISTANCE_MMA", "ROWSUM_MMA"))
        for stats in ((), all_stats) if not variant else (all_stats,):

            def launch(stats=stats):
                attention_forward(
                    q,
                    k,
                    k,
                    scaling=d**-0.5,
                    causal=True,
                    statistics=("lse",) + stats,
                    sink_tokens=4,
                    local_window=16,
                    waad_window=10,
                    span=(100, 200),
                    logit_bias=None,
                    head_gate=None,
                )

            for kernel in _compile(launch, "forward", config):
                print(
                    f"forward {config} stats={'all' if stats else 'none'}: {_resource_report(kernel.asm['cubin'])}"
                    f" shared={kernel.metadata.shared}"
                )
    for config in key_configs if not args.forward_only else []:
        for pooled in (0, 64):

            def launch(pooled=pooled):
                key_statistics_launch(
                    q,
                    k,
                    lse,
                    scaling=d**-0.5,
                    causal=True,
                    logit_bias=None,
                    received=True,
                    fai_window=None,
                    pooled_cells=pooled,
                )

            for kernel in _compile(launch, "key", config):
                print(
                    f"key {config} pooled={pooled}: {_resource_report(kernel.asm['cubin'])} shared={kernel.metadata.shared}"
                )


if __name__ == "__main__":
    main()
