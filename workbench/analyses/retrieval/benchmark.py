"""Detection cost at long context: the seam's decode-row argmax capture vs eager attention.

A random-weight model of SmolLM2-135M's shape (no weights needed, so it runs anywhere), or with
``--model`` a real checkpoint (a registry name or path) on a prompt cut from ``--haystack`` text,
prefills a prompt of ``--context`` tokens and decodes ``--steps`` greedy tokens, three ways:

* ``seam``: prefill prompt[:-1] through the seam with nothing captured, decode with the argmax capture
  (the detection path of ``niah.generate_with_decode_capture``; Triton kernels on CUDA);
* ``eager``: eager attention, ``output_attentions=True`` on the decode steps (the reference repo's way);
* ``sdpa``: plain SDPA, nothing captured (the floor).

Reports seconds per run and peak allocated memory; checks the seam's top-1 keys against eager's.

    PYTHONPATH=. python3 -m workbench.analyses.retrieval.benchmark --context 4096 --steps 32
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from workbench.runners.hf import cache_of, with_cache

# SmolLM2-135M's config (HuggingFaceTB/SmolLM2-135M-Instruct), weights random
SMOLLM2_SHAPE = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    max_position_embeddings=8192,
    rope_theta=100000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    hidden_act="silu",
)


def build(dtype, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE)).to(device=device, dtype=dtype).eval()
    return model


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_seam(model, adapter, shape, ids, steps):
    from workbench.analyses.retrieval.niah import ARGMAX_SPEC
    from workbench.runners.seam_run import seam_run
    from workbench.seam.attention import instrument

    with torch.no_grad(), instrument(model, None, (), adapter=adapter):
        past = cache_of(model(input_ids=ids[:, :-1], use_cache=True))
    with seam_run(model, ARGMAX_SPEC, adapter=adapter, shape=shape) as run:
        step = ids[:, -1:]
        for _ in range(steps):
            out = model(input_ids=step, use_cache=True, **with_cache(model, past))
            past = cache_of(out)
            step = out.logits[:, -1:].argmax(-1)
    capture = run.capture
    top = capture.row["argmax"][0]  # (layer, head, step)
    return top


def run_eager(model, ids, steps):
    tops = []
    with torch.no_grad():
        past = cache_of(model(input_ids=ids[:, :-1], use_cache=True))
        step = ids[:, -1:]
        for _ in range(steps):
            out = model(input_ids=step, use_cache=True, **with_cache(model, past), output_attentions=True)
            past = cache_of(out)
            step = out.logits[:, -1:].argmax(-1)
            tops.append(torch.stack([a[0, :, -1].argmax(-1) for a in out.attentions]))  # (layer, head)
    return torch.stack(tops, -1).cpu()


def run_sdpa(model, ids, steps):
    with torch.no_grad():
        past = cache_of(model(input_ids=ids[:, :-1], use_cache=True))
        step = ids[:, -1:]
        for _ in range(steps):
            out = model(input_ids=step, use_cache=True, **with_cache(model, past))
            past = cache_of(out)
            step = out.logits[:, -1:].argmax(-1)


def measure(fn, device, repeats):
    fn()  # warm-up (kernel compilation, allocator)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return result, {"seconds_per_run": min(times), "seconds_mean": sum(times) / len(times), "peak_mib": peak}


def real_inputs(name_or_path: str, haystack, dtype, device, context: int):
    """A real checkpoint and ``context`` tokens of haystack text (the NIAH harness's tokens)."""
    import workbench as wb
    from workbench.analyses.retrieval.haystack import PromptBuilder, read_haystack

    loaded = wb.load_model(name_or_path, device=str(device), dtype=dtype)
    tokens = PromptBuilder(loaded, read_haystack(haystack), chat=False).tokens(context)
    if len(tokens) < context:
        raise SystemExit(f"the haystack holds only {len(tokens)} tokens; --context {context} needs more")
    return loaded.hf.eval(), torch.tensor([tokens[:context]], device=device)


def bench_dtype(name: str, device, context: int, steps: int, repeats: int, model_name=None, haystack=None) -> list[dict]:
    from workbench.adapters import adapter_for

    if model_name:
        model, ids = real_inputs(model_name, haystack, getattr(torch, name), device, context)
    else:
        model = build(getattr(torch, name), device)
        ids = torch.randint(0, SMOLLM2_SHAPE["vocab_size"], (1, context), generator=torch.Generator().manual_seed(1))
        ids = ids.to(device)
    adapter = adapter_for(model)
    shape = adapter.shape(model)
    model.set_attn_implementation("sdpa")
    _, sdpa = measure(lambda: run_sdpa(model, ids, steps), device, repeats)
    seam_top, seam = measure(lambda: run_seam(model, adapter, shape, ids, steps), device, repeats)
    model.set_attn_implementation("eager")
    eager_top, eager = measure(lambda: run_eager(model, ids, steps), device, repeats)
    agreement = float((seam_top.to(eager_top.dtype) == eager_top).float().mean())
    rows = [{"dtype": name, "path": label, **values}
            for label, values in (("sdpa (no capture)", sdpa), ("seam argmax capture", seam),
                                  ("eager output_attentions", eager))]
    rows.append({"dtype": name, "path": "top-1 agreement seam vs eager", "fraction": agreement})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--model", default=None, help="a real checkpoint (name or path) instead of random weights")
    parser.add_argument("--haystack", default=None, help="text file or folder for --model's prompt (default: synthetic)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from workbench.seam import cuda_path

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "model": args.model or "random-weight SmolLM2-135M shape",
        "context": args.context,
        "steps": args.steps,
        "kernels": cuda_path.available(),
        "torch": torch.__version__,
        "results": [],
    }
    for name in args.dtypes.split(","):
        report["results"].extend(bench_dtype(name, device, args.context, args.steps, args.repeats,
                                                 args.model, args.haystack))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    return report


if __name__ == "__main__":  # pragma: no cover
    main()
