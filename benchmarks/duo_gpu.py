"""DuoAttention on one GPU (spec §2): gates to their plateau, then the deployment check on held-out NIAH.

    source benchmarks/gpu_env.sh; source /tmp/wb-stage/env.sh
    python3 benchmarks/duo_gpu.py --out OUT [--budget-s 540]

Worker processes share the GPU (a 135M model leaves it mostly idle):

* ``train``: 90 KV-head gates, the mix batched per layer (two SDPA calls, workbench/seam/streaming.py),
  ``--batch`` passkey samples of one length per step (length drawn from ``--train-lengths``), AdamW lr
  0.02, L1 0.05, the repo's warm-up/decay schedule over ``--steps``, shortened at step 15 to the steps
  that fit in its share of the budget (``--train-share``) at the pace of steps 5-15. It stops at the
  ``Plateau`` rule (``--plateau-window``, ``--tolerance``, ``--gate-tolerance``; fixed before any run),
  at the end of the schedule or at its time, whichever comes first, and records which. Then it runs the
  gate-top conditions of the deployment check.

Time (an estimate, not measured on a GPU): a step is about 3.9 TFLOP of dense work (``--estimate``:
4 x 106M parameters x 2 FLOP x 4,608 tokens) plus fp32 attention; at an effective 20-40 TFLOP/s about
0.1-0.3 s, so 1000 steps take 2-5 minutes and the schedule is cut only on a slower card. The controls
(22 conditions x 144 prompts, 48 decoded together, at most 32 steps each) take 1-2 minutes beside it.
Wall time of a call: 5-8 minutes, at most ``--budget-s`` (500) plus loading and merging.
* ``controls`` (and ``controls-1``... with ``--control-workers``, default 2): the conditions that need no
  gates, dealt round-robin over them: full attention, random full/streaming splits at each ratio
  (``--seeds``), every head streaming. (On 2026-12-07 one control worker beside a busy card reached only
  2 of the 10 random splits.)

Deployment check: held-out needles (the 8 built-in ``heldout`` needles, none used for training, which
uses NATO-word passkeys) in the essays at ``--eval-lengths`` x ``--eval-depths``, chat template, greedy,
stop at newline, at most 32 new tokens; a streaming KV head keeps the first ``--sink`` and the last
``--recent`` keys in prefill and decode. Success = ROUGE-1 recall > 0.5 (the NIAH harness).

Every worker writes ``units/<worker>.json`` as work finishes (the gates after every plateau window, each
condition's per-run rows), and the main process merges them into ``results.json`` every few seconds, so
a run cut by a timeout keeps what finished. ``--merge`` rebuilds results.json from units/ alone;
``--smoke`` is the CPU check (tiny-gqa, the synthetic haystack, a few steps); ``--estimate`` prints the
work of a run (steps, tokens, conditions, decode batches) and the time model behind the default budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from worker_pool import run_workers

from workbench.jsonfiles import write_json


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--haystack", default=None, help="default: $WORKBENCH_DATA/niah/essays")
    p.add_argument(
        "--train-lengths", default="768,1536", help="low,high: each step's length is drawn from it"
    )
    p.add_argument("--steps", type=int, default=1000, help="the schedule's length (and the step cap)")
    p.add_argument("--batch", type=int, default=4, help="passkey samples per step")
    p.add_argument("--passkeys", type=int, default=4)
    p.add_argument("--words", type=int, default=16)
    p.add_argument("--sink", type=int, default=16)
    p.add_argument("--recent", type=int, default=64)
    p.add_argument("--l1", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--plateau-window", type=int, default=100)
    p.add_argument("--tolerance", type=float, default=0.02)
    p.add_argument("--gate-tolerance", type=float, default=0.05)
    p.add_argument("--eval-lengths", default="600,900")
    p.add_argument("--eval-depths", default="10,20,30,40,50,60,70,80,90")
    p.add_argument("--ratios", default="0.5,0.25", help="shares of KV heads kept full")
    p.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="random splits per ratio")
    p.add_argument("--eval-batch", type=int, default=48)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--budget-s", type=float, default=500, help="no condition starts after this")
    p.add_argument("--train-share", type=float, default=0.7, help="share of the budget training may use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--control-workers", type=int, default=2, help="processes sharing the no-gate conditions")
    p.add_argument("--smoke", action="store_true", help="CPU check: tiny-gqa, synthetic haystack, few steps")
    p.add_argument("--estimate", action="store_true", help="only count the work")
    p.add_argument("--merge", action="store_true", help="only rebuild results.json from units/")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.device, args.haystack = "tiny-gqa", "cpu", "synthetic"
        args.train_lengths, args.steps, args.batch, args.passkeys, args.words = "300,340", 12, 2, 1, 4
        args.sink, args.recent, args.plateau_window = 4, 16, 4
        args.eval_lengths, args.eval_depths, args.seeds, args.max_new_tokens = "200", "20,80", "0,1", 4
    return args


def haystack_path(args):
    if args.haystack == "synthetic":
        return None
    if args.haystack:
        return args.haystack
    data = os.environ.get("WORKBENCH_DATA")
    if not data:
        raise SystemExit("set WORKBENCH_DATA (source /tmp/wb-stage/env.sh) or pass --haystack")
    return str(Path(data) / "niah" / "essays")


def protocol(args) -> dict:
    keys = (
        "model",
        "train_lengths",
        "steps",
        "batch",
        "passkeys",
        "words",
        "sink",
        "recent",
        "l1",
        "lr",
        "plateau_window",
        "tolerance",
        "gate_tolerance",
        "eval_lengths",
        "eval_depths",
        "ratios",
        "seeds",
        "max_new_tokens",
        "budget_s",
        "train_share",
        "seed",
        "smoke",
    )
    out = {k: getattr(args, k) for k in keys}
    out["haystack"] = args.haystack or "$WORKBENCH_DATA/niah/essays"
    out["needles"] = "built-in heldout"
    out["command"] = "python3 benchmarks/duo_gpu.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("{")
    )
    return out


# --- workers ------------------------------------------------------------------------------------------


def _prompts(model, args):
    from workbench.analyses.retrieval.haystack import PromptBuilder
    from workbench.analyses.retrieval.niah import grid_prompts, resolve_inputs

    haystack, needles = resolve_inputs(haystack_path(args), None, "heldout")
    builder = PromptBuilder(model, haystack)
    return grid_prompts(
        builder, needles, _ints(args.eval_lengths), _floats(args.eval_depths)
    ), haystack.source


def _condition(model, prompts, args, name, ratio, seed, full):
    from workbench.analyses.retrieval.niah import niah_summary, run_prompts
    from workbench.analyses.retrieval.streaming import streaming_mask

    edits = [] if full is None else streaming_mask(model.shape, full, args.sink, args.recent)
    t0 = time.time()
    runs = run_prompts(
        model, prompts, interventions=edits, max_new_tokens=args.max_new_tokens, batch_size=args.eval_batch,
        progress=False,
    ).runs
    return {
        "condition": name,
        "ratio": ratio,
        "seed": seed,
        "full_kv_heads": None if full is None else [list(h) for h in full],
        **niah_summary(runs),
        "seconds": round(time.time() - t0, 2),
        "runs": runs.drop(columns=["seconds"]).to_dict("records"),
    }


def run_worker(args, job: dict) -> None:
    import workbench as wb
    from workbench.analyses.retrieval.streaming import (
        Plateau,
        full_heads_by_gate,
        random_full_heads,
        train_gates,
    )

    start = time.time()
    deadline = job["deadline"]
    name = job["worker"]
    path = args.out / "units" / f"{name}.json"
    state: dict = {"worker": name, "conditions": []}

    def say(text):
        print(f"[{name} {time.time() - start:6.1f}s] {text}", flush=True)

    def save():
        write_json(path, state)

    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 weights and activations, TF32 matmuls
        torch.backends.cudnn.allow_tf32 = True
    model = wb.load_model(args.model, device=args.device, dtype=torch.float32)
    shape = model.shape
    pool = [
        {"layer": layer, "kv_head": kv, "gate": 1.0}
        for layer in range(shape.num_layers)
        for kv in range(shape.num_kv_heads)
    ]
    import pandas as pd

    pool = pd.DataFrame(pool)
    ratios, seeds = _floats(args.ratios), _ints(args.seeds)
    plan = []
    if name == "train":
        low, high = _ints(args.train_lengths)
        rule = Plateau(
            window=args.plateau_window, tolerance=args.tolerance, gate_tolerance=args.gate_tolerance
        )
        train_deadline = start + args.train_share * (deadline - start)

        def on_window(table):
            state["gates_partial"] = table.to_dict("records")
            save()

        t0 = time.time()
        gates = train_gates(
            model,
            haystack_path(args),
            length=(low, high),
            steps=args.steps,
            sink=args.sink,
            recent=args.recent,
            l1=args.l1,
            lr=args.lr,
            passkeys=args.passkeys,
            words=args.words,
            seed=args.seed,
            batch=args.batch,
            plateau=rule,
            progress=False,
            max_seconds=max(1.0, train_deadline - time.time()),
            on_window=on_window,
            fit_schedule=True,
        )
        state["train"] = {
            "params": gates.attrs["params"],
            "history": gates.attrs["history"],
            "plateau_checks": gates.attrs["plateau_checks"],
            "seconds": round(time.time() - t0, 1),
            "gates": gates.to_dict("records"),
        }
        state.pop("gates_partial", None)
        save()
        params = gates.attrs["params"]
        say(f"gates: {params['steps_done']} steps, stopped by {params['stopped']} ({time.time() - t0:.0f}s)")
        plan = [("gate-top", ratio, None, full_heads_by_gate(gates, ratio)) for ratio in ratios]
    else:  # the no-gate conditions, dealt round-robin over the control workers
        plan = [("full", 1.0, None, None)]
        for ratio in ratios:
            plan += [("random", ratio, seed, random_full_heads(pool, ratio, seed)) for seed in seeds]
        plan.append(("all-streaming", 0.0, None, []))
        share = workers(args).index(name) - 1
        plan = plan[share :: args.control_workers]
    prompts, source = _prompts(model, args)
    state["prompts"] = {"count": len(prompts), "haystack": source}
    save()
    longest = 0.0
    for condition, ratio, seed, full in plan:
        if time.time() + longest > deadline:
            say(f"budget reached: {condition} {ratio} seed {seed} and later conditions not started")
            break
        t0 = time.time()
        state["conditions"].append(_condition(model, prompts, args, condition, ratio, seed, full))
        save()
        longest = max(longest, time.time() - t0)
        row = state["conditions"][-1]
        say(f"{condition} {ratio} seed {seed}: success {row['success_rate']:.3f} ({row['seconds']}s)")
    say("done")


# --- the main process ---------------------------------------------------------------------------------


def workers(args) -> list[str]:
    """``train`` and the control workers (``controls``, ``controls-1``, ...)."""
    return ["train", "controls"] + [f"controls-{i}" for i in range(1, args.control_workers)]


def merge(args, started: float | None = None) -> dict:
    units = {}
    for name in workers(args):
        path = args.out / "units" / f"{name}.json"
        if path.exists():
            units[name] = json.loads(path.read_text())
    previous = (
        json.loads((args.out / "results.json").read_text()) if (args.out / "results.json").exists() else {}
    )
    train = units.get("train", {})
    conditions = [c for unit in units.values() for c in unit.get("conditions", [])]
    expected = 2 + len(_floats(args.ratios)) * (1 + len(_ints(args.seeds)))
    result = {
        "protocol": previous.get("protocol") or protocol(args),
        "device": previous.get("device") or device_name(args),
        # a --merge elsewhere keeps the run's torch
        "torch": previous.get("torch") if started is None and previous.get("torch") else torch.__version__,
        "finished": "train" in train and len(conditions) >= expected,
        "conditions_expected": expected,
        "wall_seconds": round(time.time() - started, 1) if started else previous.get("wall_seconds"),
        "train": train.get("train"),
        "gates_partial": train.get("gates_partial"),
        "prompts": train.get("prompts") or next((u["prompts"] for u in units.values() if "prompts" in u), None),
        "conditions": conditions,
    }
    write_json(args.out / "results.json", result)
    return result


def device_name(args) -> str:
    if args.device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def estimate(args) -> dict:
    """The work of one run, and the time model the default budget assumes (not a measurement)."""
    low, high = _ints(args.train_lengths)
    mean_tokens = (low + high) / 2 * args.batch
    prompts = 8 * len(_ints(args.eval_lengths)) * len(_floats(args.eval_depths))
    conditions = 2 + len(_floats(args.ratios)) * (1 + len(_ints(args.seeds)))
    flop_step = 4 * 2 * 106e6 * mean_tokens  # teacher + student forward, activation gradients (x2)
    return {
        "max_steps": args.steps,
        "tokens_per_step": mean_tokens,
        "tflop_per_step": round(flop_step / 1e12, 2),
        "steps_in_train_budget_at_20_tflops": int(args.train_share * args.budget_s / (flop_step / 20e12)),
        "eval_prompts_per_condition": prompts,
        "conditions": conditions,
        "decode_batches": conditions * -(-prompts // args.eval_batch),
    }


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker:
        run_worker(args, json.loads(args.worker))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merge(args)
        return 0
    if args.estimate:
        print(json.dumps(estimate(args), indent=2))
        return 0
    started = time.time()
    import workbench as wb

    wb.load_model(args.model, device="cpu")  # converts the GGUF once, before the workers race
    for stale in (args.out / "units").glob("*.json"):
        stale.unlink()
    (args.out / "results.json").unlink(missing_ok=True)
    merge(args, started)
    names = workers(args)
    print(f"workers {names} on {device_name(args)}; writing {args.out}", flush=True)
    run_workers(
        __file__,
        list(argv if argv is not None else sys.argv[1:]),
        [{"worker": name, "deadline": started + args.budget_s} for name in names],
        workers=len(names),
        poll_s=1 if args.smoke else 5,
        tick=lambda: merge(args, started),
        label=lambda job: job["worker"],
    )
    result = merge(args, started)
    print(
        f"done in {time.time() - started:.0f}s: {len(result['conditions'])} of {result['conditions_expected']} "
        f"conditions, gates {'trained' if result['train'] else 'missing'}; {args.out}/results.json",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
