"""A Llama-3.2-1B-shaped model with random weights at 32k tokens: plain SDPA forward vs full capture.

16 layers, hidden 2048, 32 query / 8 KV heads, head_dim 64, bf16, batch 1. "plain" is the model's own
SDPA attention; "capture" runs the same forward inside ``workbench.instrument`` with every row
statistic, received mass and a 64 x 64 pooled map on every layer and head (the seam's CUDA path, i.e.
the kernels in kernels/). Target: capture / plain <= 1.5. Writes benchmarks/results/model_capture.json
and prints a table.

    python3 benchmarks/model_capture.py [--tokens 32768] [--tune]
    python3 benchmarks/model_capture.py --smoke     # 2 tiny layers on the CPU, checks the wiring
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys

import source_tree  # noqa: E402,F401  (the repository and workbench_kernels on sys.path)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from attention_stats import overrides, timed, tune  # noqa: E402
from workbench_kernels import api as kernels  # noqa: E402
from workbench_kernels import configs  # noqa: E402

POOLED_CELLS = 64
# head_dim 64 candidates for --tune (the seam only runs the forward with statistics and the key pass)
CANDIDATES = {
    "forward_stats": [
        {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
    ],
    "key": [
        {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3},
    ],
}


def build_model(smoke: bool, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128256 if not smoke else 512,
        hidden_size=2048 if not smoke else 64,
        intermediate_size=8192 if not smoke else 128,
        num_hidden_layers=16 if not smoke else 2,
        num_attention_heads=32 if not smoke else 4,
        num_key_value_heads=8 if not smoke else 2,
        head_dim=64 if not smoke else 16,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def seam_capture(model, tokens: int):
    """A callable running the model under full capture through the workbench seam, and a check of it."""
    from workbench.seam.attention import instrument
    from workbench.seam.spec import CaptureSpec

    spec = CaptureSpec(
        statistics=kernels.ROW_STATISTICS,
        key_statistics=("received",),
        span=(tokens // 4, tokens // 2),
        sink_tokens=4,
        pooled_cells=POOLED_CELLS,
    )
    state = {}

    def run(input_ids):
        with instrument(model, spec, use_kernels=True if torch.cuda.is_available() else "always") as session:
            output = model(input_ids, logits_to_keep=1)
        state["session"] = session
        return output

    return run, state


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=32768)
    parser.add_argument(
        "--tune", action="store_true", help="pick head_dim 64 tile configs on one layer first"
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--switches",
        default="{}",
        help='speed switches on top of the tiles, JSON: {"forward": {"ARGMAX_PACKED": true}, "key": {...}}',
    )
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "model_capture.json")
    )
    args = parser.parse_args()
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    tokens = args.tokens if not args.smoke else 48
    gpu = torch.cuda.get_device_name() if on_gpu else "cpu (Triton interpreter)"

    model = build_model(args.smoke, device, dtype)
    shape = model.config
    input_ids = torch.randint(0, shape.vocab_size, (1, tokens), device=device)
    chosen = {}
    if args.tune and on_gpu:
        gen = torch.Generator(device="cpu").manual_seed(1)
        q, k, v = (
            torch.randn(1, heads, tokens, shape.head_dim, generator=gen).to(device, dtype)
            for heads in (shape.num_attention_heads, shape.num_key_value_heads, shape.num_key_value_heads)
        )
        print(f"tuning one layer's attention at T={tokens}:", flush=True)
        chosen = tune(q, k, v, CANDIDATES, pooled_cells=POOLED_CELLS)
        del q, k, v
        print(
            f"chosen: {json.dumps({key: value for key, value in chosen.items() if key != 'timings'})}",
            flush=True,
        )

    capture, state = seam_capture(model, tokens)
    switches = json.loads(args.switches)
    with contextlib.ExitStack() as stack:
        for kernel, flags in switches.items():
            stack.enter_context(configs.switches(kernel, **flags))
        row = measure(model, input_ids, capture, state, chosen, tokens, on_gpu)
    row.update(
        {"switches": switches, "gpu": gpu, "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")}
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump([row], f, indent=1)
    print()
    print(f"{'T':>7} {'layers':>6} {'plain ms':>9} {'capture ms':>10} {'ratio':>6} {'peak GB':>8}")
    print(
        f"{tokens:>7} {row['layers']:>6} {row['plain_sdpa_ms']:>9.1f} {row['capture_ms']:>10.1f} "
        f"{row['ratio']:>6.2f} {row['peak_gb']:>8.2f}"
    )


def measure(model, input_ids, capture, state, chosen, tokens, on_gpu) -> dict:
    """Plain and captured forwards of the model: logits check, median times, peak memory."""
    shape = model.config
    with torch.no_grad(), overrides(chosen):
        plain_logits = model(input_ids, logits_to_keep=1).logits
        capture_logits = capture(input_ids).logits
        session = state["session"]
        layers = sorted(session.records)
        record = session.records[layers[0]][0]
        logits_error = (
            (capture_logits.float() - plain_logits.float()).norm() / plain_logits.float().norm()
        ).item()
        print(
            f"captured layers {len(layers)}/{shape.num_hidden_layers}; row statistics {sorted(record.row)}; "
            f"key statistics {sorted(record.key or {})}; pooled {tuple(record.pooled.shape)}; "
            f"logits vs plain {logits_error:.1e}",
            flush=True,
        )
        del session, state["session"], record
        plain_ms = timed(lambda: model(input_ids, logits_to_keep=1), budget_ms=3000, max_runs=10)
        capture_ms = timed(lambda: capture(input_ids), budget_ms=3000, max_runs=10)
        state.clear()
        peak_gb = float("nan")
        if on_gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            capture(input_ids)
            torch.cuda.synchronize()
            peak_gb = torch.cuda.max_memory_allocated() / 1e9
            state.clear()
    ratio = capture_ms / plain_ms
    return {
        "T": tokens,
        "model": "llama-3.2-1b-shaped, random weights",
        "layers": shape.num_hidden_layers,
        "plain_sdpa_ms": round(plain_ms, 3),
        "capture_ms": round(capture_ms, 3),
        "ratio": round(ratio, 3),
        "peak_gb": round(peak_gb, 3),
        "logits_rel_error": logits_error,
        "configs": {key: value for key, value in chosen.items() if key != "timings"},
    }


if __name__ == "__main__":
    main()
