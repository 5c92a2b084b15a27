"""Short-context fixed costs (kernels round 4, item 2): eager calls against CUDA-graph replays, SDPA alongside.

Shape: batch 1, 32 query / 8 KV heads, d 128, bf16, causal; T = 1k, 2k, 4k, 8k, 16k. Rows per T, each
timed eager and as a replay of a CUDA graph captured from the same call (the graph removes the host
side: Python, Triton's launcher, allocations):
    sdpa            torch SDPA (flash), the baseline of the ratios
    lse             the forward with the lse only
    row_stats       the forward with every row statistic
    key_pass        received mass + 64 x 64 pooled map from a given lse (the default tiles)
    key_pass_split2 the same with QUERY_SPLIT=2 (kernels/configs.py; off by default)
    capture         row_stats + key_pass (the full capture)
    capture_split2  row_stats + key_pass_split2
Median of CUDA-event times, L2 flushed (256 MB zeroed) before each run outside the timed region. A row
that fails (compile, capture, launch) is recorded with its error and the run goes on. Writes JSON to
--out (default $OUT/short_context.json); prints a table. Budget: well under 90 s on an H100.

    python3 benchmarks/short_context.py --out $OUT/short_context.json
    python3 benchmarks/short_context.py --dry-run     # CPU interpreter, tiny shapes, eager only
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import time
import traceback

import source_tree  # noqa: F401  (the repository and workbench_kernels on sys.path)
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernel_sweep import Bench  # noqa: E402
from workbench_kernels import api as kernels  # noqa: E402
from workbench_kernels import configs  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
LENGTHS = (1024, 2048, 4096, 8192, 16384)
POOLED_CELLS = 64
SPLIT_ROWS = ("key_pass_split2", "capture_split2")  # timed inside configs.switches("key", QUERY_SPLIT=2)


def log(message: str) -> None:
    print(message, flush=True)


class Timer:
    """Median ms of fn over n runs (n from a budget, 5 to max_runs), L2 flushed before each run
    (kernel_sweep's Bench)."""

    def __init__(self, budget_ms: float):
        self.bench = Bench(True, budget_ms)

    def __call__(self, fn, max_runs: int = 50) -> dict:
        times = self.bench.times(fn, max_runs, min_runs=5)
        return {"ms": statistics.median(times), "runs": len(times), "min_ms": min(times)}


def captured(fn):
    """A CUDA graph of fn (warmed up on a side stream first); returns its replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    torch.cuda.synchronize()
    return graph.replay, graph


def workloads(q, k, v, lse):
    length = q.shape[2]
    scaling = HEAD_DIM**-0.5
    row_options = dict(
        scaling=scaling, causal=True, statistics=kernels.ROW_STATISTICS, sink_tokens=4, local_window=16,
        waad_window=10, span=(length // 4, length // 2),
    )  # fmt: skip
    key_options = dict(
        scaling=scaling, causal=True, received=True, fai_window=None, pooled_cells=POOLED_CELLS
    )

    def key_pass():
        return kernels.key_statistics(q, k, lse, **key_options)

    def capture():
        out, stats = kernels.attention_with_statistics(q, k, v, **row_options)
        return out, stats, kernels.key_statistics(q, k, stats["lse"], **key_options)

    return {
        "sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=scaling, enable_gqa=True
        ),
        "lse": lambda: kernels.attention_with_statistics(q, k, v, scaling=scaling, causal=True),
        "row_stats": lambda: kernels.attention_with_statistics(q, k, v, **row_options),
        "key_pass": key_pass,
        "key_pass_split2": key_pass,  # the same calls under QUERY_SPLIT=2 (see SPLIT_ROWS)
        "capture": capture,
        "capture_split2": capture,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "short_context.json"))
    parser.add_argument("--lengths", type=int, nargs="*", default=None)
    parser.add_argument("--budget-ms", type=float, default=100.0, help="timing budget per measurement")
    parser.add_argument("--deadline-s", type=float, default=80.0, help="skip what is left after this")
    parser.add_argument("--dry-run", action="store_true", help="CPU interpreter, tiny shapes, eager only")
    args = parser.parse_args()

    global HEADS, KV_HEADS, HEAD_DIM, POOLED_CELLS
    on_gpu = torch.cuda.is_available() and not args.dry_run
    if not on_gpu:
        HEADS, KV_HEADS, HEAD_DIM, POOLED_CELLS = 2, 1, 32, 4
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    lengths = args.lengths or (LENGTHS if on_gpu else (40,))
    began = time.time()
    record = {
        "device": torch.cuda.get_device_name() if on_gpu else "cpu (Triton interpreter, dry run)",
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "shape": {
            "batch": 1,
            "heads": HEADS,
            "kv_heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "dtype": str(dtype),
            "causal": True,
            "pooled_cells": POOLED_CELLS,
        },  # fmt: skip
        "key_pass_path": None,
        "rows": [],
        "errors": [],
    }
    log(f"device: {record['device']}; torch {record['torch']}, triton {record['triton']}")
    timer = Timer(args.budget_ms) if on_gpu else None

    def save():
        record["wall_s"] = round(time.time() - began, 1)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)

    for length in lengths:
        try:
            gen = torch.Generator(device="cpu").manual_seed(length)
            q, k, v = (
                torch.randn(1, heads, length, HEAD_DIM, generator=gen).to(device=device, dtype=dtype)
                for heads in (HEADS, KV_HEADS, KV_HEADS)
            )
            lse = kernels.attention_with_statistics(q, k, v, scaling=HEAD_DIM**-0.5)[1]["lse"]
        except Exception as error:
            record["errors"].append(
                {"T": length, "row": "inputs", "error": f"{type(error).__name__}: {error}"}
            )
            log(f"T={length}: inputs failed: {error}")
            continue
        for name, fn in workloads(q, k, v, lse).items():
            row = {"T": length, "row": name}
            if time.time() - began > args.deadline_s:
                row["skipped"] = f"deadline ({args.deadline_s} s) passed"
                record["rows"].append(row)
                continue

            def split(name=name):  # a fresh context per use (each can be entered once)
                return (
                    configs.switches("key", QUERY_SPLIT=2) if name in SPLIT_ROWS else contextlib.nullcontext()
                )

            for mode in ("eager", "graph"):
                if not on_gpu:
                    if mode == "eager":
                        begin = time.perf_counter()
                        try:
                            with split():
                                fn()
                            row["eager_wall_ms"] = (time.perf_counter() - begin) * 1e3
                        except Exception as error:
                            row["eager_error"] = f"{type(error).__name__}: {error}"
                    continue
                graph = replay = None
                try:
                    with split():
                        if mode == "eager":
                            measured = timer(fn)
                        else:
                            replay, graph = captured(fn)
                            measured = timer(replay)
                    row[f"{mode}_ms"] = round(measured["ms"], 4)
                    row[f"{mode}_min_ms"] = round(measured["min_ms"], 4)
                    row[f"{mode}_runs"] = measured["runs"]
                except Exception as error:
                    row[f"{mode}_error"] = f"{type(error).__name__}: {str(error)[:300]}"
                    record["errors"].append({"T": length, "row": name, "mode": mode,
                                             "traceback": traceback.format_exc()[-1500:]})  # fmt: skip
                    with contextlib.suppress(Exception):
                        torch.cuda.synchronize()
                finally:
                    del graph, replay
            if name.startswith("key_pass") and record["key_pass_path"] is None:
                path = kernels.last_key_pass_path()
                record["key_pass_path"] = path.as_dict() if path else None
            record["rows"].append(row)
            log(f"T={length} {name}: " + ", ".join(f"{key} {value}" for key, value in row.items()
                                                   if key.endswith(("_ms", "_error"))))  # fmt: skip
        save()
        del q, k, v, lse
        if on_gpu:
            torch.cuda.empty_cache()

    # Ratios against SDPA of the same T and mode.
    sdpa = {(row["T"], mode): row.get(f"{mode}_ms") for row in record["rows"] if row["row"] == "sdpa"
            for mode in ("eager", "graph")}  # fmt: skip
    for row in record["rows"]:
        for mode in ("eager", "graph"):
            base, value = sdpa.get((row["T"], mode)), row.get(f"{mode}_ms")
            if base and value:
                row[f"{mode}_vs_sdpa"] = round(value / base, 3)
    save()
    log("")
    log(f"{'T':>6} {'row':<16} {'eager ms':>9} {'graph ms':>9} {'eager/sdpa':>10} {'graph/sdpa':>10}")
    for row in record["rows"]:
        cells = [row.get("eager_ms"), row.get("graph_ms"), row.get("eager_vs_sdpa"), row.get("graph_vs_sdpa")]
        text = " ".join(f"{c:>9.3f}" if isinstance(c, float) else f"{'-':>9}" for c in cells)
        log(f"{row['T']:>6} {row['row']:<16} {text}")
    log(f"wrote {args.out} ({record['wall_s']} s, {len(record['errors'])} errors)")


if __name__ == "__main__":
    main()
