"""LoFiT at the paper's protocol on one GPU (spec §5), results laid out for docs/results/data/lofit/.

    source benchmarks/gpu_env.sh
    WORKBENCH_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf \\
        python3 benchmarks/lofit_gpu.py --data DATA --out OUT [--tasks truthfulqa,clutrr]

DATA holds ``truthfulqa/{train,val}.csv`` (or the two CSVs directly) and, for CLUTRR,
``clutrr/{train,val,test}.json``. TruthfulQA: the 408 questions of train.csv + val.csv in two folds
(test on one half; train on 80% of the other, pick the epoch on its last 20%; then swap). Per (fold,
seed): step 1 (scales on every head, 5 epochs) ranks the heads; for each K, offsets on the top-K heads,
on K random heads and on all heads under the same parameter budget, each trained 5 epochs and kept at
the epoch with the lowest validation loss; then MC1/MC2 per test question. The base model is scored
once per fold. CLUTRR (optional): train.json / val.json / test.json, one "fold".

Time (estimate, not measured on a GPU): ``--estimate`` counts the work. TruthfulQA at the defaults is
13,440 optimiser steps (7 trainings x 5 epochs x 62-66 steps, x 2 folds x 3 seeds) over 9.1M padded
tokens, about 3.8 PFLOP (forward + activation gradients, 106M non-embedding parameters). On the shared
CPU one step-1 step took about 87 s (3 steps in 262 s at load average 9), i.e. about 3.4 GFLOP/s; an
H100 at an effective 20-60 TFLOP/s on TF32 (small 576-wide matmuls) needs 1.1-3.2 min of compute, and
per-step launch overhead (about 30 ms, 13,440 steps spread over 6 processes) about the same again:
3-7 minutes in all. ``--budget-s`` (default 480) stops a job from starting a condition that would end
later; each job trains LoFiT and random heads first and the all-heads control last, so a slow card
loses all-heads rows first.

The (fold, seed) jobs run as parallel worker processes on the one GPU (a 135M model leaves it mostly
idle). Every worker writes ``units/<job>.json`` after every condition and the main process merges them
into ``results.json`` every few seconds, so a run cut by a timeout still leaves every finished
condition. ``--merge`` rebuilds results.json from units/ alone, keeping the newest unit of each (task,
fold, seed, condition, K). ``--smoke`` is the CPU check: tiny-gqa, a few questions, one step.

The rest of a cut run, in a fresh out folder (a run clears its own units/), then merged:
    --jobs truthfulqa-fold0-seed2,...            whole (fold, seed) jobs: units/<job>.json
    --conditions all --jobs ...                  some conditions again: units/<job>--all-k8+27.json
    cp NEW/units/* RUN/units/; cp -r NEW/offsets/* RUN/offsets/; then --merge --out RUN
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from worker_pool import run_workers

from workbench.jsonfiles import write_json

SPLIT_SEED = 1234  # the fold split; fixed so every run and machine sees the same folds
VAL_SHARE = 0.2  # the paper's repo: 326 train / 82 val out of each fold's 408 training questions


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--tasks", default="truthfulqa", help="comma list: truthfulqa, clutrr")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ks", default="8,27")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--conditions", default="lofit,random,all")
    p.add_argument("--epochs", type=int, default=5, help="the paper's 5 for both steps")
    p.add_argument("--steps", type=int, default=None, help="cap optimiser steps per training (smoke only)")
    p.add_argument("--limit", type=int, default=None, help="questions/items per split (smoke only)")
    p.add_argument("--clutrr-train-limit", type=int, default=None, help="subsample CLUTRR's train.json")
    p.add_argument("--eval-batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=6, help="parallel (fold, seed) jobs on the GPU")
    p.add_argument("--jobs", default=None,
                   help="comma list of job names to run, e.g. truthfulqa-fold1-seed0 (the rest of a cut run; "
                        "then merge both runs' units/ folders into one out folder and --merge)")
    p.add_argument(
        "--budget-s", type=float, default=480, help="no condition starts that would end after this"
    )
    p.add_argument("--no-tf32", action="store_true", help="strict fp32 matmuls on the GPU (slower)")
    p.add_argument("--smoke", action="store_true", help="CPU check: tiny-gqa, 6 questions, 1 step")
    p.add_argument("--estimate", action="store_true", help="only count steps and padded tokens")
    p.add_argument("--merge", action="store_true", help="only rebuild results.json from units/")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.device = "tiny-gqa", "cpu"
        args.ks, args.seeds, args.steps, args.limit, args.epochs = "2", "0", 1, 6, 1
        args.workers, args.eval_batch = 1, 16
    return args


# --- data -----------------------------------------------------------------------------------------


def _file(data: Path, task: str, name: str) -> Path:
    for candidate in (data / task / name, data / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} for {task} not found under {data} (tried {data / task} and {data})")


def truthfulqa_folds(data: Path, limit: int | None = None) -> list[dict]:
    """Two folds over train.csv + val.csv: {"train", "val", "test"} lists of (question id, question)."""
    from workbench.analyses.lofit import load_task

    questions = load_task("truthfulqa", _file(data, "truthfulqa", "train.csv"))
    questions += load_task("truthfulqa", _file(data, "truthfulqa", "val.csv"))
    order = list(range(len(questions)))
    random.Random(SPLIT_SEED).shuffle(order)
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    folds = []
    for fold in (0, 1):
        test, rest = halves[fold], halves[1 - fold]
        cut = len(rest) - round(VAL_SHARE * len(rest))
        split = {"train": rest[:cut], "val": rest[cut:], "test": test}
        if limit:
            split = {name: ids[:limit] for name, ids in split.items()}
        folds.append({name: [(i, questions[i]) for i in ids] for name, ids in split.items()})
    return folds


def clutrr_split(data: Path, limit: int | None, train_limit: int | None) -> dict:
    from workbench.analyses.lofit import load_task

    split = {}
    for name in ("train", "val", "test"):
        items = load_task("clutrr", _file(data, "clutrr", f"{name}.json"))
        cap = train_limit if name == "train" and train_limit else limit
        split[name] = list(enumerate(items[:cap] if cap else items))
    return split


# --- one worker: one (task, fold, seed) -----------------------------------------------------------


def _evaluate(model, task, test, interventions, eval_batch) -> dict:
    from workbench.analyses.lofit.metrics import completion_accuracy, truthfulqa_mc

    ids = [i for i, _ in test]
    items = [item for _, item in test]
    if task == "truthfulqa":
        result = truthfulqa_mc(
            model, items, interventions, batch_size=eval_batch, batched=True, per_question=True
        )
        rows = result.pop("questions")
        result["items"] = {
            "id": ids,
            "mc1": [r["mc1"] for r in rows],
            "mc2": [round(r["mc2"], 6) for r in rows],
        }
    else:
        result = completion_accuracy(model, items, interventions, batch_size=eval_batch, per_item=True)
        rows = result.pop("items")
        result["items"] = {"id": ids, "accuracy": [float(r["correct"]) for r in rows]}
    return result


def run_worker(args, job: dict) -> None:
    from safetensors.torch import save_file

    import workbench as wb
    from workbench.analyses.lofit import (
        TrainConfig,
        random_heads,
        select_heads,
        top_heads,
        train_offsets,
        train_shared_budget,
    )

    start = time.time()
    deadline = job["deadline"]
    task, fold, seed = job["task"], job["fold"], job["seed"]
    name = f"{task}-fold{fold}-seed{seed}"
    # a run of other conditions or Ks for the same job (e.g. `--conditions all` after a fix) writes its own file,
    # so copying its units/ beside an earlier run's loses nothing; --merge keeps the newest unit of each key
    default = args.conditions == "lofit,random,all" and args.ks == "8,27"
    suffix = "" if default else f"--{args.conditions.replace(',', '+')}-k{args.ks.replace(',', '+')}"
    unit_path = args.out / "units" / f"{name}{suffix}.json"
    units: list[dict] = []

    def say(text):
        print(f"[{name} {time.time() - start:6.1f}s] {text}", flush=True)

    def record(unit):
        units.append(unit)
        write_json(unit_path, {"job": job, "written": time.time(), "units": units})

    if args.device.startswith("cuda"):
        # fp32 weights and activations; matmuls on TF32 tensor cores unless --no-tf32 (about 3x the
        # throughput on an H100 for this run, which is compute-bound: see the estimate in 7-lofit.md)
        torch.backends.cuda.matmul.allow_tf32 = not args.no_tf32
        torch.backends.cudnn.allow_tf32 = not args.no_tf32
    model = wb.load_model(args.model, device=args.device, dtype=torch.float32)
    if task == "truthfulqa":
        split = truthfulqa_folds(args.data, args.limit)[fold]
    else:
        split = clutrr_split(args.data, args.limit, args.clutrr_train_limit)
    train = [item for _, item in split["train"]]
    val = [item for _, item in split["val"]]
    head_dim = model.shape.head_dim
    base_unit = {"task": task, "fold": fold, "model": args.model, "n_train": len(train), "n_val": len(val)}

    if job["base"]:
        t0 = time.time()
        result = _evaluate(model, task, split["test"], [], args.eval_batch)
        record(
            {
                **base_unit,
                "seed": None,
                "condition": "base",
                "k": 0,
                "params": 0,
                "seconds": round(time.time() - t0, 2),
                **result,
            }
        )
        say(f"base: { {k: v for k, v in result.items() if k != 'items'} }")

    overrides = {"epochs": args.epochs, "steps": args.steps, "seed": seed}
    conditions = args.conditions.split(",")
    table = None  # step 1 ranks the heads for the LoFiT condition only: random and all-heads runs skip it
    if "lofit" in conditions:
        t0 = time.time()
        table, _, select_log = select_heads(
            model, train, TrainConfig.defaults(task, 1, **overrides), progress=False
        )
        heads_path = args.out / "heads" / f"{name}.json"
        write_json(
            heads_path,
            {
                "job": job,
                "steps": select_log["steps"],
                "seconds": round(time.time() - t0, 2),
                "heads": table[["layer", "head", "score"]].to_dict("records"),
            },
        )
        say(f"step 1: {select_log['steps']} steps in {time.time() - t0:.1f}s")

    config = TrainConfig.defaults(task, 2, **overrides)
    plan = [(c, k) for c in ("lofit", "random") if c in conditions for k in job["ks"]]
    plan += [("all", k) for k in job["ks"] if "all" in conditions]
    longest = 0.0  # the slowest condition so far: a condition that would end past the budget is not started
    for condition, k in plan:
        if time.time() + longest > deadline:
            say(f"budget reached: {condition} K={k} and later conditions not started")
            break
        t0 = time.time()
        folder = args.out / "offsets" / f"{name}-{condition}-k{k}"
        if condition == "all":
            artifact, log, coordinates = train_shared_budget(
                model, k * head_dim, train, config, val_items=val, projection_seed=1000 + seed, progress=False
            )
            folder.mkdir(parents=True, exist_ok=True)
            save_file({"coordinates": coordinates.contiguous()}, str(folder / "coordinates.safetensors"))
            write_json(
                folder / "coordinates.json",
                {
                    "budget": k * head_dim,
                    "projection_seed": 1000 + seed,
                    "map": "workbench.analyses.lofit.budget_projection",
                },
            )
            heads = "all"
            extra = {"lr_scale": artifact.params.get("lr_scale")}  # absent in units of the run before the fix: 1.0
        else:
            chosen = top_heads(table, k) if condition == "lofit" else random_heads(model, k, 1000 + seed)
            artifact, log = train_offsets(model, chosen, train, config, val_items=val, progress=False)
            artifact.save(folder)
            heads = [list(h) for h in artifact.heads]
            extra = {}
        train_seconds = time.time() - t0
        result = _evaluate(model, task, split["test"], artifact.interventions(), args.eval_batch)
        record(
            {
                **base_unit,
                "seed": seed,
                "condition": condition,
                "k": k,
                "params": k * head_dim,
                "heads": heads,
                "steps": log["steps"],
                "selected_step": log.get("selected_step"),
                "val": log["val"],
                "train_seconds": round(train_seconds, 2),
                "seconds": round(time.time() - t0, 2),
                **extra,
                **result,
            }
        )
        longest = max(longest, time.time() - t0)
        say(
            f"{condition} K={k}: {log['steps']} steps, best val step {log.get('selected_step')}, "
            f"{ {m: round(v, 4) for m, v in result.items() if m in ('mc1', 'mc2', 'accuracy')} } "
            f"({time.time() - t0:.1f}s)"
        )
    say("done")


def estimate(args, model) -> dict:
    """Optimiser steps and padded training tokens of a full run (the tokenizer only, no forward)."""
    from workbench.analyses.lofit import TrainConfig
    from workbench.analyses.lofit.train import make_examples

    trainings = 1 + len(args.ks.split(",")) * len(args.conditions.split(","))
    seeds = len(args.seeds.split(","))
    steps = tokens = 0
    for task in args.tasks.split(","):
        splits = (
            truthfulqa_folds(args.data, args.limit)
            if task == "truthfulqa"
            else [clutrr_split(args.data, args.limit, args.clutrr_train_limit)]
        )
        config = TrainConfig.defaults(task, 2)
        for split in splits:
            examples = make_examples(model, [item for _, item in split["train"]], config)
            order = list(range(len(examples)))
            random.Random(0).shuffle(order)
            per_epoch = 0
            for start in range(0, len(order), config.batch_size):
                chunk = [examples[i] for i in order[start : start + config.batch_size]]
                rows = 2 if chunk[0].rejected is not None else 1
                per_epoch += rows * len(chunk) * max(len(e.prompt) + len(e.target) for e in chunk)
            epochs = args.epochs if args.steps is None else 1
            batches = -(-len(examples) // config.batch_size)
            steps += trainings * seeds * epochs * (min(batches, args.steps) if args.steps else batches)
            tokens += trainings * seeds * epochs * per_epoch
    return {
        "optimiser_steps": steps,
        "padded_training_tokens": tokens,
        "pflop_forward_and_activation_gradients": round(4 * 106e6 * tokens / 1e15, 2),
    }


# --- the main process -----------------------------------------------------------------------------


def plan_jobs(args, started: float) -> tuple[list[dict], int]:
    """The (task, fold, seed) jobs, seed-major (a cut run still has whole seeds over both folds), and
    the number of units a complete run writes."""
    ks = [int(k) for k in args.ks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    conditions = args.conditions.split(",")
    jobs = []
    for task in args.tasks.split(","):
        folds = (0, 1) if task == "truthfulqa" else (0,)
        for seed in seeds:
            for fold in folds:
                jobs.append(
                    {
                        "task": task,
                        "fold": fold,
                        "seed": seed,
                        "ks": ks,
                        "base": seed == seeds[0],
                        "deadline": started + args.budget_s,
                    }
                )
    if args.jobs:
        wanted = set(args.jobs.split(","))
        unknown = wanted - {f"{j['task']}-fold{j['fold']}-seed{j['seed']}" for j in jobs}
        if unknown:
            raise SystemExit(f"--jobs: no such job {sorted(unknown)}")
        jobs = [j for j in jobs if f"{j['task']}-fold{j['fold']}-seed{j['seed']}" in wanted]
    expected = sum(len(job["ks"]) * len(conditions) + job["base"] for job in jobs)
    return jobs, expected


def merge(args, started: float | None = None, expected: int | None = None) -> dict:
    files = [json.loads(path.read_text()) for path in sorted((args.out / "units").glob("*.json"))]
    newest: dict[tuple, dict] = {}  # a unit re-run later (other units/ file, newer "written") replaces the earlier
    for file in sorted(files, key=lambda f: f.get("written", 0.0)):
        for unit in file["units"]:
            newest[(unit["task"], unit["fold"], unit.get("seed"), unit["condition"], unit.get("k"))] = unit
    units = list(newest.values())
    previous = {}
    if (args.out / "results.json").exists():
        previous = json.loads((args.out / "results.json").read_text())
    result = {
        "protocol": previous.get("protocol") or protocol(args),
        "device": previous.get("device") or device_name(args),
        "torch": previous.get("torch") if started is None and previous.get("torch") else torch.__version__,  # a --merge elsewhere keeps the run's
        "finished": expected is not None and len(units) >= expected,
        "units_expected": expected,
        "wall_seconds": round(time.time() - started, 1) if started else previous.get("wall_seconds"),
        "units": units,
    }
    write_json(args.out / "results.json", result)
    return result


def protocol(args) -> dict:
    return {
        "tasks": args.tasks,
        "model": args.model,
        "ks": args.ks,
        "seeds": args.seeds,
        "conditions": ["base", *args.conditions.split(",")],
        "epochs": args.epochs,
        "steps": args.steps,
        "limit": args.limit,
        "clutrr_train_limit": args.clutrr_train_limit,
        "split_seed": SPLIT_SEED,
        "val_share": VAL_SHARE,
        "smoke": args.smoke,
        "tf32": not args.no_tf32,
        "command": "python3 benchmarks/lofit_gpu.py " + " ".join(sys.argv[1:]),
    }


def device_name(args) -> str:
    if args.device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker:
        run_worker(args, json.loads(args.worker))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    jobs, expected = plan_jobs(args, started)
    if args.merge:
        merge(args, expected=expected)
        return 0
    import workbench as wb

    model = wb.load_model(args.model, device="cpu")  # converts the GGUF once, before the workers race
    if args.estimate:
        print(json.dumps(estimate(args, model), indent=2))
        return 0
    for stale in (args.out / "units").glob("*.json"):  # a fresh run: nothing of an earlier one survives
        stale.unlink()
    (args.out / "results.json").unlink(missing_ok=True)
    merge(args, started, expected)
    print(
        f"{len(jobs)} jobs, {args.workers} at a time, on {device_name(args)}; writing {args.out}", flush=True
    )
    run_workers(
        __file__,
        list(argv if argv is not None else sys.argv[1:]),
        jobs,
        workers=args.workers,
        poll_s=1 if args.smoke else 5,
        tick=lambda: merge(args, started, expected),
    )
    result = merge(args, started, expected)
    print(
        f"done in {time.time() - started:.0f}s: {len(result['units'])} of {expected} units in "
        f"{args.out}/results.json",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
