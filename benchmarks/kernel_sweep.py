"""Speed variants of the capture kernels in one GPU call: check each, time each, keep the best exact one.

Shape of issue 3: one layer, batch 1, 32 query / 8 KV heads, d = 128, bf16, causal. For every variant
(a tile config plus compile-time switches, kernels/configs.py) of the forward with row statistics and of
the key pass (received mass + 64 x 64 pooled map):
  1. correctness on fresh random inputs at a length that is not a multiple of any block (default 1999)
     against the float64 reference (kernels/reference.py), outputs poisoned with NaN first; a variant
     that fails to compile or misses the tolerance (1e-2, bf16) is logged and dropped;
  2. times at each length: SDPA, the plain forward, each forward variant, each key variant, then the
     full capture (forward with every row statistic + key pass) for the baseline pair and for the
     fastest exact pair at that length. Median of CUDA-event times, L2 flushed before each run (as
     triton.testing.do_bench does), a time budget per measurement.
Writes to --out-dir (default $OUT, else benchmarks/results): attention_stats.json (issue format, best
exact pair), kernel_sweep_detail.json (every number) and, with --model, model_capture.json; prints a
table last.

    python3 benchmarks/kernel_sweep.py                      # GPU, about 3 minutes
    python3 benchmarks/kernel_sweep.py --model              # + the whole-model line
    python3 benchmarks/kernel_sweep.py --dry-run            # CPU interpreter, tiny shapes
    python3 benchmarks/kernel_sweep.py --lengths 4096 16384 32768 --budget-ms 300 \
        --only fwd_packed fwd_packed_mma fwd_rowsum fwd_rowsum_s2   # round 4, fewer ALU ops (< 2 min)
Needs only torch, triton and numpy (the --model line also runs benchmarks/model_capture.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import traceback

import source_tree  # noqa: E402,F401  (the repository and workbench_kernels on sys.path)
import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from workbench_kernels import api as kernels  # noqa: E402
from workbench_kernels import configs  # noqa: E402
from workbench_kernels.testing import logits_at, relative_error  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
LENGTHS = (4096, 16384, 32768, 65536, 131072)
POOLED_CELLS = 64
TOLERANCE = 1e-2

# name -> full forward config (tiles + switches). The first entry is the run-2 default (pair-reduction
# argmax, the baseline); since run 3 the shipped default is fwd_packed (kernels/configs.py).
FORWARD_VARIANTS = {
    "fwd_base": {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3, "ARGMAX_PACKED": False},
    "fwd_packed": {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3, "ARGMAX_PACKED": True},
    "fwd_packed_s2": {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2, "ARGMAX_PACKED": True},
    "fwd_packed_mma": {
        "BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2, "ARGMAX_PACKED": True, "DISTANCE_MMA": True,
    },
    # round 4 (fewer ALU operations per score): row sum + absolute key-position sums on the tensor cores
    "fwd_rowsum": {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3, "ARGMAX_PACKED": True, "ROWSUM_MMA": True},
    "fwd_rowsum_s2": {
        "BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2, "ARGMAX_PACKED": True, "ROWSUM_MMA": True,
    },
    "fwd_packed_mma_m128": {
        "BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 2, "ARGMAX_PACKED": True, "DISTANCE_MMA": True,
    },
}  # fmt: skip
KEY_VARIANTS = {
    "key_base": {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 4},
    "key_poly": {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 4, "EXP_POLY": True},
    "key_poly_s2": {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 2, "EXP_POLY": True},
    "key_s2": {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 2},
    "key_poly_w8": {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3, "EXP_POLY": True},
    "key_pipe_w8": {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3, "PIPELINE": True},
}
DRY_TILES = {"BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}


def log(message: str) -> None:
    print(message, flush=True)


class Bench:
    """Median ms of fn: one estimate, then n = budget / estimate runs (3 to max_runs), each after an L2
    flush (256 MB zeroed, outside the timed region), timed with CUDA events. Wall clock on the CPU."""

    def __init__(self, on_gpu: bool, budget_ms: float):
        self.on_gpu, self.budget_ms = on_gpu, budget_ms
        self.flush = torch.empty(64 * 1024 * 1024, dtype=torch.int32, device="cuda") if on_gpu else None

    def __call__(self, fn, max_runs: int = 40) -> float:
        if not self.on_gpu:
            begin = time.perf_counter()
            fn()
            return (time.perf_counter() - begin) * 1e3
        return statistics.median(self.times(fn, max_runs))

    def times(self, fn, max_runs: int = 40, min_runs: int = 3) -> list[float]:
        """Every timed run's ms (CUDA only): a warm-up, one estimate, then budget / estimate runs."""
        fn()  # warm-up (compilation happened in the check)
        torch.cuda.synchronize()
        times = [self._once(fn)]
        runs = int(min(max_runs, max(min_runs, self.budget_ms / max(times[0], 1e-3))))
        times += [self._once(fn) for _ in range(runs - 1)]
        return times

    def _once(self, fn) -> float:
        self.flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)


def make_inputs(length: int, device, dtype, seed: int):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return tuple(
        torch.randn(1, heads, length, HEAD_DIM, generator=gen).to(device=device, dtype=dtype)
        for heads in (HEADS, KV_HEADS, KV_HEADS)
    )


def row_options(length: int) -> dict:
    return dict(
        scaling=HEAD_DIM**-0.5,
        causal=True,
        statistics=kernels.ROW_STATISTICS,
        sink_tokens=4,
        local_window=16,
        waad_window=10,
        span=(length // 4, length // 2),
    )


def key_options() -> dict:
    return dict(
        scaling=HEAD_DIM**-0.5, causal=True, received=True, fai_window=None, pooled_cells=POOLED_CELLS
    )


def poison(device) -> None:
    """Fill freed allocator blocks with NaN so an output element the kernel never writes shows up."""
    if device.type == "cuda":
        junk = torch.full((256 * 1024 * 1024,), float("nan"), device=device)
        del junk


def check_forward(name, config, q, k, v, reference) -> dict:
    ref_out, ref_stats = reference
    options = row_options(q.shape[2])
    poison(q.device)
    with configs.override("forward", **config):
        out, stats = kernels.attention_with_statistics(q, k, v, **options)
    errors = {"out": relative_error(out, ref_out)}
    for stat in kernels.ROW_STATISTICS:
        if stat == "argmax":
            chosen = logits_at(q, k, stats["argmax"], scaling=options["scaling"])
            best = (ref_stats["lse"] + torch.log(ref_stats["max"])).cpu()
            errors["argmax_gap"] = (best - chosen.cpu()).max().item()  # logit units; must be ~0
        else:
            errors[stat] = relative_error(stats[stat], ref_stats[stat])
    exact = (
        all(e < TOLERANCE for key, e in errors.items() if key != "argmax_gap") and errors["argmax_gap"] < 1e-3
    )
    worst = max((e, key) for key, e in errors.items() if key != "argmax_gap")
    log(f"  check {name}: {'exact' if exact else 'NOT EXACT'}; worst {worst[1]} {worst[0]:.1e}, "
        f"argmax gap {errors['argmax_gap']:.1e}")  # fmt: skip
    return {"exact": exact, "errors": errors}


def check_key(name, config, q, k, lse, reference) -> dict:
    poison(q.device)
    with configs.override("key", **config):
        result = kernels.key_statistics(q, k, lse, **key_options())
    errors = {stat: relative_error(result[stat], reference[stat]) for stat in ("received", "pooled")}
    exact = all(e < TOLERANCE for e in errors.values())
    log(f"  check {name}: {'exact' if exact else 'NOT EXACT'}; "
        + ", ".join(f"{s} {e:.1e}" for s, e in errors.items()))  # fmt: skip
    return {"exact": exact, "errors": errors}


def run_checks(variants_fwd, variants_key, check_length, device, dtype) -> dict:
    """Compile and check every variant; returns name -> {"exact", "errors"} or {"failed": message}."""
    from workbench_kernels.reference import attention_reference, key_statistics_reference

    q, k, v = make_inputs(check_length, device, dtype, seed=int(time.time()) % 100000)
    reference_dtype = torch.float64
    ref = attention_reference(q, k, v, **row_options(check_length), dtype=reference_dtype, chunk=128)
    ref_key = key_statistics_reference(q, k, **key_options(), dtype=reference_dtype, chunk=128)
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=True, scale=HEAD_DIM**-0.5, enable_gqa=True
    ).transpose(1, 2)
    log(f"  sdpa vs float64: {relative_error(sdpa, ref[0]):.1e}")
    results = {}
    for name, config in variants_fwd.items():
        results[name] = guarded(
            name, lambda name=name, config=config: check_forward(name, config, q, k, v, ref)
        )
    lse = ref[1]["lse"].to(torch.float32)
    for name, config in variants_key.items():
        results[name] = guarded(
            name, lambda name=name, config=config: check_key(name, config, q, k, lse, ref_key)
        )
    return results


def guarded(name, fn):
    """Run fn; a compile error or a launch failure is logged and the variant dropped, not fatal."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001 - any failure of one variant must not stop the others
        message = f"{type(error).__name__}: {str(error)[:300]}"
        log(f"  {name}: FAILED ({message})")
        traceback.print_exc(limit=3, file=sys.stdout)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return {"failed": message, "exact": False}


def time_length(length, variants_fwd, variants_key, bench, device, dtype) -> dict:
    q, k, v = make_inputs(length, device, dtype, seed=length)
    options, scaling = row_options(length), HEAD_DIM**-0.5
    times = {}
    times["sdpa"] = bench(
        lambda: torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=scaling, enable_gqa=True
        )
    )
    times["plain"] = bench(lambda: kernels.attention_with_statistics(q, k, v, scaling=scaling, causal=True))
    lse = kernels.attention_with_statistics(q, k, v, scaling=scaling, causal=True)[1]["lse"]
    for name, config in variants_fwd.items():
        with configs.override("forward", **config):
            times[name] = guarded(
                name, lambda: bench(lambda: kernels.attention_with_statistics(q, k, v, **options))
            )
    for name, config in variants_key.items():
        with configs.override("key", **config):
            times[name] = guarded(
                name, lambda: bench(lambda: kernels.key_statistics(q, k, lse, **key_options()))
            )
    times = {name: t for name, t in times.items() if isinstance(t, float)}

    def capture(fwd_config, key_config):
        def run():
            with configs.override("forward", **fwd_config), configs.override("key", **key_config):
                out, stats = kernels.attention_with_statistics(q, k, v, **options)
                keyed = kernels.key_statistics(q, k, stats["lse"], **key_options())
            return out, stats, keyed

        return run

    fwd_names = [n for n in variants_fwd if n in times]
    key_names = [n for n in variants_key if n in times]
    best_fwd = min(fwd_names, key=times.__getitem__)
    best_key = min(key_names, key=times.__getitem__)
    pairs = {"capture_base": (fwd_names[0], key_names[0]), "capture_best": (best_fwd, best_key)}
    result = {"T": length, "times_ms": times, "best_forward": best_fwd, "best_key": best_key}
    for label, (fwd_name, key_name) in pairs.items():
        run = capture(variants_fwd[fwd_name], variants_key[key_name])
        if label == "capture_best" and pairs["capture_base"] == pairs["capture_best"]:
            times[label] = times["capture_base"]
        else:
            times[label] = bench(run)
    # sanity at scale: received mass sums to the number of rows, everything finite, memory
    run = capture(variants_fwd[best_fwd], variants_key[best_key])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        inputs_gb = torch.cuda.memory_allocated() / 1e9
    out, stats, keyed = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak_gb = torch.cuda.max_memory_allocated() / 1e9
    else:
        inputs_gb = peak_gb = float("nan")
    result["received_sum_error"] = (keyed["received"].sum(-1).double() / length - 1).abs().max().item()
    result["all_finite"] = all(
        torch.isfinite(t.float()).all().item() for t in (out, *stats.values(), *keyed.values())
    )
    result["peak_gb"], result["inputs_gb"] = peak_gb, inputs_gb
    result["ratio_base"] = times["capture_base"] / times["sdpa"]
    # the faster of the two measured pairs (per-kernel winners need not win together)
    chosen = min(pairs, key=times.__getitem__)
    result["capture_pair"], result["capture_ms"] = pairs[chosen], times[chosen]
    result["ratio_best"] = times[chosen] / times["sdpa"]
    return result


def run_model(out_dir: str, fwd_config: dict, key_config: dict, timeout_s: int) -> None:
    """The whole-model line through the seam, with the winning switches on top of its own (d = 64) tiles."""
    switches = {
        "forward": {s: fwd_config[s] for s in configs.SWITCHES["forward"] if fwd_config.get(s)},
        "key": {s: key_config[s] for s in configs.SWITCHES["key"] if key_config.get(s)},
    }
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_capture.py")
    command = [sys.executable, script, "--out", os.path.join(out_dir, "model_capture.json"),
               "--switches", json.dumps(switches)]  # fmt: skip
    log(f"model line: {' '.join(command)}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        log("\n".join((done.stdout + done.stderr).strip().splitlines()[-6:]))
    except subprocess.TimeoutExpired:
        log(f"model line: timed out after {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="*", default=None)
    parser.add_argument(
        "--out-dir", default=os.environ.get("OUT") or os.path.join(os.path.dirname(__file__), "results")
    )
    parser.add_argument("--check-length", type=int, default=1999)
    parser.add_argument("--budget-ms", type=float, default=600.0, help="time budget of one measurement")
    parser.add_argument(
        "--only", nargs="*", default=None, help="variant names to keep (the base ones always stay)"
    )
    parser.add_argument(
        "--model", action="store_true", help="also run benchmarks/model_capture.py with the winners"
    )
    parser.add_argument("--model-timeout", type=int, default=150)
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU interpreter, tiny shapes, fp32: checks the script"
    )
    args = parser.parse_args()  # fmt: skip

    global HEADS, KV_HEADS, HEAD_DIM, POOLED_CELLS
    started = time.time()
    on_gpu = torch.cuda.is_available()
    variants_fwd, variants_key = dict(FORWARD_VARIANTS), dict(KEY_VARIANTS)
    if args.only:
        keep = set(args.only) | {"fwd_base", "key_base"}
        variants_fwd = {n: c for n, c in variants_fwd.items() if n in keep}
        variants_key = {n: c for n, c in variants_key.items() if n in keep}
    if args.dry_run or not on_gpu:  # exercise the script, not the speed: shapes the interpreter runs fast
        HEADS, KV_HEADS, HEAD_DIM, POOLED_CELLS = 4, 1, 32, 5
        variants_fwd = {n: {**c, **DRY_TILES} for n, c in variants_fwd.items()}
        variants_key = {n: {**c, **DRY_TILES} for n, c in variants_key.items()}
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    lengths = args.lengths or (LENGTHS if on_gpu and not args.dry_run else (40, 70))
    check_length = args.check_length if on_gpu and not args.dry_run else 45
    import triton

    gpu = torch.cuda.get_device_name() if on_gpu else "cpu (Triton interpreter)"
    log(f"device: {gpu}; torch {torch.__version__}; triton {triton.__version__}")
    os.makedirs(args.out_dir, exist_ok=True)

    log(f"checks at T={check_length} against float64 (compiles every variant):")
    checks = run_checks(variants_fwd, variants_key, check_length, device, dtype)
    exact_fwd = {n: c for n, c in variants_fwd.items() if checks[n].get("exact")}
    exact_key = {n: c for n, c in variants_key.items() if checks[n].get("exact")}
    log(f"exact: {sorted(exact_fwd) + sorted(exact_key)}; dropped: "
        f"{sorted(set(variants_fwd) - set(exact_fwd)) + sorted(set(variants_key) - set(exact_key))}; "
        f"{time.time() - started:.0f} s so far")  # fmt: skip
    if not exact_fwd or not exact_key:
        raise SystemExit("no exact forward or key variant left; see the checks above")

    def write() -> None:  # after every length, so a timeout still leaves what was measured
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        issue_rows = [
            {"T": r["T"], "sdpa_ms": round(r["times_ms"]["sdpa"], 4), "capture_ms": round(r["capture_ms"], 4),
             "ratio": round(r["ratio_best"], 3), "peak_gb": round(r["peak_gb"], 3), "gpu": gpu, "date": date}
            for r in results
        ]  # fmt: skip
        detail = {
            "gpu": gpu, "torch": torch.__version__, "triton": triton.__version__, "date": date,
            "shape": {"heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM, "pooled_cells": POOLED_CELLS},
            "variants": {"forward": variants_fwd, "key": variants_key}, "checks": checks, "lengths": results,
            "wall_s": round(time.time() - started, 1),
        }  # fmt: skip
        with open(os.path.join(args.out_dir, "attention_stats.json"), "w") as f:
            json.dump(issue_rows, f, indent=1)
        with open(os.path.join(args.out_dir, "kernel_sweep_detail.json"), "w") as f:
            json.dump(detail, f, indent=1, default=str)

    bench = Bench(on_gpu, args.budget_ms)
    results = []
    for length in lengths:
        result = guarded(
            f"T={length}",
            lambda length=length: time_length(length, exact_fwd, exact_key, bench, device, dtype),
        )
        if "failed" in result:
            continue
        results.append(result)
        t = result["times_ms"]
        log(f"T={length}: " + ", ".join(f"{n} {ms:.3f}" for n, ms in t.items())
            + f"; ratio base {result['ratio_base']:.2f}, best {result['ratio_best']:.2f}"
            f" ({' + '.join(result['capture_pair'])}); {time.time() - started:.0f} s")  # fmt: skip
        write()
        if on_gpu:
            torch.cuda.empty_cache()

    if args.model and on_gpu and results:
        from collections import Counter

        fwd_win = Counter(r["best_forward"] for r in results).most_common(1)[0][0]
        key_win = Counter(r["best_key"] for r in results).most_common(1)[0][0]
        run_model(args.out_dir, variants_fwd[fwd_win], variants_key[key_win], args.model_timeout)

    log(
        f"\nwrote {args.out_dir}/attention_stats.json, kernel_sweep_detail.json; {time.time() - started:.0f} s"
    )
    # variants as rows, lengths as columns: fits the width of a terminal
    names = ["sdpa", "plain"] + list(exact_fwd) + list(exact_key) + ["capture_base", "capture_best"]
    log(f"{'ms':<20}" + "".join(f"{r['T']:>10}" for r in results))
    for name in names:
        log(f"{name:<20}" + "".join(f"{r['times_ms'].get(name, float('nan')):>10.3f}" for r in results))
    log(f"{'ratio base':<20}" + "".join(f"{r['ratio_base']:>10.2f}" for r in results))
    log(f"{'ratio best':<20}" + "".join(f"{r['ratio_best']:>10.2f}" for r in results))
    for r in results:
        log(f"T={r['T']}: capture {' + '.join(r['capture_pair'])}, peak {r['peak_gb']:.2f} GB, "
            f"received-sum error {r['received_sum_error']:.1e}, finite {r['all_finite']}")  # fmt: skip


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
