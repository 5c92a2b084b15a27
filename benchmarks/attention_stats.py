"""Attention with full capture against plain SDPA: one layer, 32 query / 8 KV heads, d=128, bf16, causal.

capture = the forward with every row statistic (lse, entropy, max, argmax, sink / local / span mass,
mean distance, WAAD) + the key-side pass (received mass and a 64 x 64 pooled map). Target: capture /
SDPA <= 1.5 at every length, extra memory O(H * T). Writes a list of
{"T", "sdpa_ms", "capture_ms", "ratio", "peak_gb", "gpu", "date"} to benchmarks/results/attention_stats.json
(the parts of capture go to attention_stats_detail.json) and prints a table.

    python3 benchmarks/attention_stats.py                 # on a CUDA machine
    python3 benchmarks/attention_stats.py --tune          # try tile configs at 16k first
    python3 benchmarks/attention_stats.py --smoke         # tiny sizes on the CPU interpreter
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time

import source_tree  # noqa: E402,F401  (the repository and workbench_kernels on sys.path)
import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from workbench_kernels import api as kernels  # noqa: E402
from workbench_kernels import configs  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
LENGTHS = (4096, 16384, 32768, 65536, 131072)
POOLED_CELLS = 64
# Tile configs tried by --tune (the CPU smoke run times only the first of each list).
CANDIDATES = {
    "forward_plain": [
        {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
    ],
    "forward_stats": [
        {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3, "ARGMAX_BRANCH": True},
        {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
    ],
    "key": [
        {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_N": 256, "num_warps": 8, "num_stages": 2},
        {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 4},
    ],
}


def timed(fn, *, budget_ms: float = 1500.0, min_runs: int = 3, max_runs: int = 50) -> float:
    """Median milliseconds of ``fn`` after a warm-up, timed with CUDA events (wall clock on CPU)."""
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        estimate = start.elapsed_time(end)
        runs = int(min(max_runs, max(min_runs, budget_ms / max(estimate, 1e-3))))
        times = []
        for _ in range(runs):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)
    times = []
    for _ in range(1):
        begin = time.perf_counter()
        fn()
        times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def make_inputs(length: int, device, dtype, seed: int):
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)

    q = normal(1, HEADS, length, HEAD_DIM)
    k = normal(1, KV_HEADS, length, HEAD_DIM)
    v = normal(1, KV_HEADS, length, HEAD_DIM)
    return q, k, v


def flex_with_lse(q, k, v, scaling: float):
    """FlexAttention (torch.compile'd, causal block mask) returning the output and its log-sum-exp: the
    reference column of issue 19's table. None where this torch has no flex attention or cannot compile it."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as error:
        print(f"flex attention: not available ({error})", flush=True)
        return None
    length = q.shape[2]
    mask = create_block_mask(  # compiled: the eager mask would materialise T x T booleans (16 GB at 128k)
        lambda b, h, qi, ki: qi >= ki, None, None, length, length, device=q.device, _compile=True
    )
    compiled = torch.compile(flex_attention, dynamic=False)

    def run():
        return compiled(q, k, v, block_mask=mask, scale=scaling, enable_gqa=True, return_lse=True)

    try:
        run()
    except Exception as error:  # say which path is missing, never drop the column silently
        print(f"flex attention: failed to run ({type(error).__name__}: {str(error)[:200]})", flush=True)
        return None
    return run


def workloads(q, k, v, *, flex: bool = False):
    length = q.shape[2]
    scaling = HEAD_DIM**-0.5
    row_options = dict(
        scaling=scaling,
        causal=True,
        statistics=kernels.ROW_STATISTICS,
        sink_tokens=4,
        local_window=16,
        waad_window=10,
        span=(length // 4, length // 2),
    )

    def sdpa():
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=scaling, enable_gqa=True
        )

    def plain():
        return kernels.attention_with_statistics(q, k, v, scaling=scaling, causal=True)

    def forward_with_statistics():
        return kernels.attention_with_statistics(q, k, v, **row_options)

    def rows_lse():  # the forward returning the log-sum-exp only (issue 19's first column)
        return kernels.attention_with_statistics(q, k, v, scaling=scaling, causal=True, statistics=("lse",))

    lse = forward_with_statistics()[1]["lse"]

    def key_pass():
        return kernels.key_statistics(
            q, k, lse, scaling=scaling, causal=True, received=True, fai_window=None, pooled_cells=POOLED_CELLS
        )

    def capture():
        out, stats = kernels.attention_with_statistics(q, k, v, **row_options)
        keyed = kernels.key_statistics(
            q,
            k,
            stats["lse"],
            scaling=scaling,
            causal=True,
            received=True,
            fai_window=None,
            pooled_cells=POOLED_CELLS,
        )
        return out, stats, keyed

    work = {
        "sdpa": sdpa,
        "plain": plain,
        "rows_lse": rows_lse,
        "forward_stats": forward_with_statistics,
        "key_pass": key_pass,
        "capture": capture,
    }
    flex_run = flex_with_lse(q, k, v, scaling) if flex else None
    if flex_run is not None:
        work["flex_lse"] = flex_run
    return work


def tune(q, k, v, candidates: dict = CANDIDATES, *, pooled_cells: int = POOLED_CELLS) -> dict:
    """Time each candidate config on (q, k, v); return the fastest per kernel ("forward_plain",
    "forward_stats", "key"), with every timing under "timings"."""
    length, head_dim = q.shape[2], q.shape[3]
    scaling = head_dim**-0.5
    on_gpu = torch.cuda.is_available()
    _, stats = kernels.attention_with_statistics(q, k, v, scaling=scaling)
    runs = {
        "forward_plain": lambda: kernels.attention_with_statistics(q, k, v, scaling=scaling),
        "forward_stats": lambda: kernels.attention_with_statistics(
            q, k, v, scaling=scaling, statistics=kernels.ROW_STATISTICS, span=(length // 4, length // 2)
        ),
        "key": lambda: kernels.key_statistics(
            q, k, stats["lse"], scaling=scaling, fai_window=None, pooled_cells=pooled_cells
        ),
    }
    chosen = {"timings": []}
    for label, configs_to_try in candidates.items():
        kernel = "key" if label == "key" else "forward"
        results = []
        for config in configs_to_try if on_gpu else configs_to_try[:1]:
            with configs.override(kernel, **config):
                try:
                    ms = timed(runs[label], budget_ms=300)
                except Exception as error:  # a config the compiler or the chip rejects
                    print(
                        f"  {label} {config}: failed ({type(error).__name__}: {str(error)[:160]})", flush=True
                    )
                    continue
            results.append((ms, config))
            chosen["timings"].append({"kernel": label, "config": config, "ms": round(ms, 4), "T": length})
            print(f"  {label} {config}: {ms:.3f} ms", flush=True)
        chosen[label] = min(results, key=lambda r: r[0])[1]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="*", default=None)
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "attention_stats.json")
    )
    parser.add_argument("--tune", action="store_true", help="pick tile configs at 16k before the sweep")
    parser.add_argument("--smoke", action="store_true", help="tiny lengths on the CPU interpreter (fp32)")
    parser.add_argument("--flex", action="store_true", help="also time FlexAttention returning lse (GPU)")
    args = parser.parse_args()

    global HEADS, KV_HEADS, HEAD_DIM, POOLED_CELLS
    on_gpu = torch.cuda.is_available()
    if args.smoke:  # exercise the script, not the kernels: a shape the interpreter runs in seconds
        HEADS, KV_HEADS, HEAD_DIM, POOLED_CELLS = 2, 1, 32, 4
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    lengths = args.lengths or ((40,) if args.smoke or not on_gpu else LENGTHS)
    gpu = torch.cuda.get_device_name() if on_gpu else "cpu (Triton interpreter)"
    print(f"device: {gpu}; torch {torch.__version__}", flush=True)

    chosen = {}
    if args.tune:
        tune_length = 16384 if on_gpu else 40
        print(f"tuning at T={tune_length}:", flush=True)
        chosen = tune(*make_inputs(tune_length, device, dtype, seed=1))
        print(
            f"chosen: {json.dumps({key: value for key, value in chosen.items() if key != 'timings'})}",
            flush=True,
        )
    rows, details = [], []
    for length in lengths:
        q, k, v = make_inputs(length, device, dtype, seed=length)
        with overrides(chosen):
            work = workloads(q, k, v, flex=args.flex and on_gpu)
            # Correct at scale: our output against SDPA's, and received mass summing to the number of rows.
            out, stats, keyed = work["capture"]()
            sdpa_out = work["sdpa"]().transpose(1, 2)
            out_error = ((out.float() - sdpa_out.float()).norm() / sdpa_out.float().norm()).item()
            mass_error = (keyed["received"].sum(-1).double() / length - 1).abs().max().item()
            finite = all(torch.isfinite(t.float()).all().item() for t in (*stats.values(), *keyed.values()))
            del out, stats, keyed, sdpa_out
            times = {name: timed(fn) for name, fn in work.items()}
            if on_gpu:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                inputs_gb = torch.cuda.memory_allocated() / 1e9
                work["capture"]()
                torch.cuda.synchronize()
                peak_gb = torch.cuda.max_memory_allocated() / 1e9
            else:
                inputs_gb = peak_gb = float("nan")
            del work
        ratio = times["capture"] / times["sdpa"]
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        rows.append(
            {
                "T": length,
                "sdpa_ms": round(times["sdpa"], 4),
                "capture_ms": round(times["capture"], 4),
                "ratio": round(ratio, 3),
                "peak_gb": round(peak_gb, 3),
                "gpu": gpu,
                "date": date,
            }
        )
        details.append(
            {
                "T": length,
                **{f"{name}_ms": round(ms, 4) for name, ms in times.items()},
                "ratios": {name: round(ms / times["sdpa"], 3) for name, ms in times.items() if name != "sdpa"},
                "inputs_gb": round(inputs_gb, 3),
                "peak_gb": round(peak_gb, 3),
                "extra_gb": round(peak_gb - inputs_gb, 3),
                "out_vs_sdpa_rel_error": out_error,
                "received_sum_error": mass_error,
                "all_finite": finite,
                "configs": {key: value for key, value in chosen.items() if key != "timings"},
                "torch": torch.__version__,
            }
        )
        print(
            f"T={length}: "
            + ", ".join(f"{n} {ms:.3f} ms" for n, ms in times.items())
            + f", ratio {ratio:.2f}, "
            f"peak {peak_gb:.2f} GB (inputs {inputs_gb:.2f}), out vs sdpa {out_error:.1e}, finite {finite}",
            flush=True,
        )
        del q, k, v
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    with open(args.out.replace(".json", "_detail.json"), "w") as f:
        json.dump(details, f, indent=1)
    if chosen:
        with open(args.out.replace(".json", "_tuning.json"), "w") as f:
            json.dump(chosen["timings"], f, indent=1)
    print()
    print(
        f"{'T':>7} {'sdpa ms':>9} {'plain ms':>9} {'fwd+stats':>9} {'key pass':>9} {'capture':>9} {'ratio':>6} {'peak GB':>8}"
    )
    for row, detail in zip(rows, details, strict=True):
        print(
            f"{row['T']:>7} {row['sdpa_ms']:>9.3f} {detail['plain_ms']:>9.3f} {detail['forward_stats_ms']:>9.3f} "
            f"{detail['key_pass_ms']:>9.3f} {row['capture_ms']:>9.3f} {row['ratio']:>6.2f} {row['peak_gb']:>8.2f}"
        )
    # issue 19's table: ratios against SDPA in this run
    print()
    print(f"{'T':>7} {'rows, lse only':>15} {'all row stats':>14} {'full capture':>13} {'flex + lse':>11}")
    for detail in details:
        r = detail["ratios"]
        print(
            f"{detail['T']:>7} {r['rows_lse']:>15.2f} {r['forward_stats']:>14.2f} {r['capture']:>13.2f} "
            f"{r.get('flex_lse', float('nan')):>11.2f}"
        )


def overrides(chosen: dict):
    """Apply tuned configs: forward with statistics for the capture, key config for the key pass."""
    import contextlib

    stack = contextlib.ExitStack()
    if "forward_stats" in chosen or "forward_plain" in chosen:
        stack.enter_context(_ForwardByStatistics(chosen.get("forward_plain"), chosen.get("forward_stats")))
    if "key" in chosen:
        stack.enter_context(configs.override("key", **chosen["key"]))
    return stack


class _ForwardByStatistics:
    """Route plain forwards and forwards with statistics to their own tuned configs."""

    def __init__(self, plain: dict, with_statistics: dict):
        self.plain, self.with_statistics = plain, with_statistics

    def __enter__(self):
        self.original = configs.forward_config

        def pick(head_dim, dtype, device, with_statistics):
            tuned = self.with_statistics if with_statistics else self.plain
            return dict(tuned) if tuned else self.original(head_dim, dtype, device, with_statistics)

        configs.forward_config = pick
        return self

    def __exit__(self, *exc):
        configs.forward_config = self.original
        return False


if __name__ == "__main__":
    main()
