"""Gluon key pass on the GPU in one process: exactness against float64, then times next to Triton and SDPA.

Shape of benchmarks/NOTES.md: batch 1, 32 query / 8 KV heads, d = 128, bf16, causal; statistics received
mass + FAI window (10, 100), no pooled map (the Gluon kernel does not compute it; both kernels do the
same work). Order, so that a failing or hanging Gluon kernel costs only its own numbers:
  1. environment and the key pass chosen (``api.key_pass_path``, with and without WORKBENCH_KEY_PASS=gluon);
  2. the Triton key pass against float64 at each --check length;
  3. SDPA and the Triton key pass timed at each --time length (median of CUDA events, L2 flushed:
     kernel_sweep.Bench);
  4. each Gluon variant (plain, ping-pong) checked at each --check length, then timed at each --time
     length; a variant that raises is logged with its error and skipped, the others go on.
The JSON (--out, default $OUT/gluon_gpu_check.json) is rewritten after every step, so a hang killed by
the caller's timeout still leaves everything measured before it. --skip-gluon runs steps 1-3 only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

import source_tree  # noqa: E402,F401  (the repository and workbench_kernels on sys.path)
import torch  # noqa: E402
from kernel_sweep import Bench  # noqa: E402
from workbench_kernels import api as kernels  # noqa: E402
from workbench_kernels import key_pass_selection as selection  # noqa: E402
from workbench_kernels.testing import relative_error  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
FAI_WINDOW = (10, 100)
TOLERANCE = 1e-2  # bf16, as the kernel tests
GLUON_VARIANTS = {"gluon_ws": False, "gluon_ws_pingpong": True}  # name -> PINGPONG


def log(message: str) -> None:
    print(message, flush=True)


class Report:
    def __init__(self, path: str):
        self.path, self.data = path, {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "errors": {}}

    def save(self) -> None:
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(self.path + ".tmp", self.path)


def make_inputs(length: int, seed: int):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v = (
        torch.randn(1, heads, length, HEAD_DIM, generator=gen).to("cuda", torch.bfloat16)
        for heads in (HEADS, KV_HEADS, KV_HEADS)
    )
    _, stats = kernels.attention_with_statistics(q, k, v, scaling=HEAD_DIM**-0.5, causal=True)
    return q, k, v, stats["lse"]


def options() -> dict:
    return dict(scaling=HEAD_DIM**-0.5, causal=True, logit_bias=None, received=True, fai_window=FAI_WINDOW)


def triton_key_pass(q, k, lse):
    from workbench_kernels.key_statistics_pass import key_statistics_launch

    return key_statistics_launch(q, k, lse, **options(), pooled_cells=0)


def gluon_key_pass(q, k, lse, pingpong: bool):
    from workbench_kernels.gluon_key_pass import gluon_key_statistics_launch

    return gluon_key_statistics_launch(q, k, lse, **options(), pingpong=pingpong)


def errors_against(result: dict, reference: dict) -> dict:
    return {name: relative_error(result[name], reference[name]) for name in reference}


def poisoned(fn):
    """Run fn after filling freed allocator blocks with NaN, so an output element never written shows."""
    junk = torch.full((64 * 1024 * 1024,), float("nan"), device="cuda")
    del junk
    out = fn()
    torch.cuda.synchronize()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gluon_gpu_check.json"))
    parser.add_argument("--check", default="1024,4096,16384", help="lengths checked against float64")
    parser.add_argument("--time", default="4096,16384,32768", help="lengths timed")
    parser.add_argument("--budget-ms", type=float, default=400.0, help="time budget per measurement")
    parser.add_argument("--skip-gluon", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        log("needs CUDA")
        return 2
    from workbench_kernels.reference import key_statistics_reference

    report = Report(args.out)
    data = report.data
    import triton

    data["environment"] = {
        "device": torch.cuda.get_device_name(),
        "capability": list(torch.cuda.get_device_capability()),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "key_pass_path_default": kernels.key_pass_path().as_dict(),
    }
    with selection.preference("gluon"):
        data["environment"]["key_pass_path_gluon_asked"] = kernels.key_pass_path().as_dict()
    log(json.dumps(data["environment"]))
    report.save()
    check_lengths = [int(x) for x in args.check.split(",") if x]
    time_lengths = [int(x) for x in args.time.split(",") if x]
    bench = Bench(True, args.budget_ms)

    # 2. Triton against float64 (references kept for step 4).
    references, checks = {}, data.setdefault("checks", {})
    for length in check_lengths:
        q, k, _, lse = make_inputs(length, seed=length)
        begin = time.perf_counter()
        references[length] = key_statistics_reference(
            q, k, scaling=HEAD_DIM**-0.5, causal=True, fai_window=FAI_WINDOW, chunk=256
        )
        errors = errors_against(
            poisoned(lambda q=q, k=k, lse=lse: triton_key_pass(q, k, lse)), references[length]
        )
        checks.setdefault("triton", {})[str(length)] = errors
        log(f"check triton T={length}: {errors} (reference {time.perf_counter() - begin:.1f} s)")
        report.save()

    # 3. SDPA and Triton timed.
    times = data.setdefault("times_ms", {})
    for length in time_lengths:
        q, k, v, lse = make_inputs(length, seed=1)
        for name, fn in (
            ("sdpa", lambda q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=HEAD_DIM**-0.5, enable_gqa=True)),
            ("triton_key", lambda q=q, k=k, lse=lse: triton_key_pass(q, k, lse)),
        ):  # fmt: skip
            try:
                times.setdefault(name, {})[str(length)] = bench(fn)
            except Exception as error:
                data["errors"][f"{name}@{length}"] = f"{type(error).__name__}: {error}"
            log(f"time {name} T={length}: {times.get(name, {}).get(str(length))}")
            report.save()
        del q, k, v, lse

    # 4. Gluon variants: check, then time; one failing variant does not stop the other.
    if not args.skip_gluon:
        for name, pingpong in GLUON_VARIANTS.items():
            try:
                exact = True
                for length in check_lengths:
                    q, k, _, lse = make_inputs(length, seed=length)
                    run = lambda q=q, k=k, lse=lse, pingpong=pingpong: gluon_key_pass(q, k, lse, pingpong)  # noqa: E731
                    errors = errors_against(poisoned(run), references[length])
                    checks.setdefault(name, {})[str(length)] = errors
                    exact &= all(e < TOLERANCE for e in errors.values())
                    log(f"check {name} T={length}: {errors}")
                    report.save()
                data.setdefault("exact", {})[name] = exact
                for length in time_lengths:
                    q, k, _, lse = make_inputs(length, seed=1)
                    run = lambda q=q, k=k, lse=lse, pingpong=pingpong: gluon_key_pass(q, k, lse, pingpong)  # noqa: E731
                    times.setdefault(name, {})[str(length)] = bench(run)
                    log(f"time {name} T={length}: {times[name][str(length)]}")
                    report.save()
            except Exception as error:
                message = f"{type(error).__name__}: {error}"
                data["errors"][name] = message[-2000:]
                log(f"{name} FAILED: {message[-600:]}")
                traceback.print_exc()
                report.save()
                try:  # a launch error can poison the context; later steps would fail too
                    torch.cuda.synchronize()
                except Exception as sticky:
                    data["errors"]["cuda_context"] = f"{type(sticky).__name__}: {sticky}"
                    report.save()
                    break

    # Ratios for the table: each key pass / SDPA, each Gluon variant / Triton.
    ratios = data.setdefault("ratios", {})
    for name, by_length in times.items():
        for length, ms in by_length.items():
            sdpa, base = times.get("sdpa", {}).get(length), times.get("triton_key", {}).get(length)
            if sdpa and name != "sdpa":
                ratios.setdefault(f"{name}/sdpa", {})[length] = ms / sdpa
            if base and name.startswith("gluon"):
                ratios.setdefault(f"{name}/triton_key", {})[length] = ms / base
    data["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report.save()
    log(json.dumps({"times_ms": times, "ratios": ratios, "errors": data["errors"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
