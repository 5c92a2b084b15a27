"""ACT and ZeroTuning with hundreds of tuning items, on one GPU (issue 17 item 3; spec §3b, §3c).

    source benchmarks/gpu_env.sh; source /tmp/wb-stage/env.sh
    python3 benchmarks/calibration_gpu.py --data "$WORKBENCH_DATA" --out OUT

Results are laid out for ``docs/results/data/calibration/<run>/`` (``results.json``; rendered by
``workbench/report/calibration.py``). Tasks (``workbench/analyses/calibration/tasks.py``):

* ``truthfulqa``: the 408 questions of train.csv + val.csv in two folds (seeded shuffle, halves of 204):
  the search tunes on one half and is tested on the other, then the halves swap, so every question gets
  one held-out prediction from a search that never saw it (408 held-out, 204 tuning per search).
* ``clutrr``: tune on ``--clutrr-tune`` items of val.json (seeded sample, default 300), test on all 450
  of test.json (disjoint ids).
* ``sentiment`` (shipped): only 200 items exist (80 calibration + 120 test), so two folds of 100: 100
  tuning items per search and 200 held-out predictions (the data do not allow 200 / 400).

Per (task, fold, method) job: the base model on the test items; the search on the tuning items
(``calibrate_act``: each layer of 2..L-2 profiled alone, HeadHunter greedy over the best 4, budget 2;
``calibrate_zerotuning``: each head index in every layer at gamma 2, down-effective ones at 1/2, greedy,
strength); then on the test items: the selected heads, ``--seeds`` random draws of the same number of
heads (drawn from the method's candidate heads outside the selected ones; ZeroTuning keeps each group's
gamma), and all candidate heads (ACT: every head of layers 2..L-2; ZeroTuning: every head at the gamma
that scores best on the tuning items among ``ALL_GAMMAS``). Per-item correctness is kept, so the report
pairs the conditions item by item.

Workers: the jobs run as parallel processes on the one GPU (a 135M model leaves it mostly idle); each
writes ``units/<job>.json`` after every condition, and the main process merges them into
``results.json`` every few seconds, so a run cut by a timeout keeps every finished condition.
``--merge`` rebuilds results.json from units/; ``--estimate`` counts the tokens of a full run (tokenizer
only); ``--smoke`` is the CPU check (tiny-gqa, 6 items per split, 1 random seed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import torch
from worker_pool import run_workers

from workbench.jsonfiles import write_json

SPLIT_SEED = 1234  # the fold split; fixed so every run and machine sees the same folds
ALL_GAMMAS = (0.25, 0.5, 2.0, 4.0)  # ZeroTuning on every head: gamma tuned on the tuning items
TASK_FOLDS = {"truthfulqa": 2, "clutrr": 1, "sentiment": 2}
RANDOM_SEED_BASE = 1000  # random-head draw of seed s uses Random(RANDOM_SEED_BASE + s)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("WORKBENCH_DATA", "../shared/data")))
    p.add_argument("--tasks", default="clutrr,truthfulqa,sentiment", help="comma list")
    p.add_argument("--methods", default="act,zerotuning", help="comma list: act, zerotuning")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seeds", default="0,1,2,3,4", help="random-head draws per job")
    p.add_argument("--clutrr-tune", type=int, default=300, help="tuning items sampled from CLUTRR val.json")
    p.add_argument("--act-candidates", default="layer", help="head, layer, block (calibrate_act kind)")
    p.add_argument("--zt-candidates", default="head_index", help="head, layer, head_index")
    p.add_argument(
        "--batch", type=int, default=None, help="sequences per forward (default: the task scorer's)"
    )
    p.add_argument("--limit", type=int, default=None, help="items per split (smoke only)")
    p.add_argument("--workers", type=int, default=5, help="parallel jobs on the GPU")
    p.add_argument(
        "--budget-s", type=float, default=480, help="no test condition starts that would end after this"
    )
    p.add_argument("--no-tf32", action="store_true", help="strict fp32 matmuls on the GPU (slower)")
    p.add_argument("--smoke", action="store_true", help="CPU check: tiny-gqa, 6 items per split, 1 seed")
    p.add_argument("--estimate", action="store_true", help="only count the tokens of a full run")
    p.add_argument("--merge", action="store_true", help="only rebuild results.json from units/")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.device, args.seeds, args.workers = "tiny-gqa", "cpu", "0", 2
        args.limit = args.limit or 6
    return args


# --- data -----------------------------------------------------------------------------------------


def _folds(items: list, folds: int) -> list[tuple[list, list]]:
    """(tune, test) per fold: a seeded shuffle cut in halves; fold f tests on half f."""
    order = list(range(len(items)))
    random.Random(SPLIT_SEED).shuffle(order)
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    return [([items[i] for i in halves[1 - f]], [items[i] for i in halves[f]]) for f in range(folds)]


def splits(args, task: str) -> list[dict]:
    """Per fold: {"tune": Task, "test": Task} (items of the test task never in the tune task)."""
    from workbench.analyses.calibration import tasks as T

    if task == "truthfulqa":
        first, second = T.truthfulqa("calibration", args.data), T.truthfulqa("test", args.data)
        pairs = _folds(first.items + second.items, 2)
        make = lambda items: T.Task("truthfulqa", items, mode="options")  # noqa: E731
    elif task == "sentiment":
        first, second = T.sentiment("calibration"), T.sentiment("test")
        pairs = _folds(first.items + second.items, 2)
        # "auto": label words on SmolLM2 (" positive" / " negative" differ in their first token), whole
        # options on a tokenizer where they do not (tiny-gqa's, in --smoke); the unit records which
        make = lambda items: T.Task("sentiment", items, mode="auto")  # noqa: E731
    elif task == "clutrr":
        tune, test = T.clutrr("calibration", args.data), T.clutrr("test", args.data)
        tune_items = T._limit(tune.items, args.clutrr_tune, seed=SPLIT_SEED)
        pairs = [(tune_items, test.items)]
        make = lambda items: T.Task("clutrr", items, mode="options", meta={"candidates": 4})  # noqa: E731
    else:
        raise SystemExit(f"unknown task {task!r}: use {sorted(TASK_FOLDS)}")
    out = []
    for tune, test in pairs:
        if args.limit:
            tune, test = tune[: args.limit], test[: args.limit]
        shared = {i.id for i in tune} & {i.id for i in test}
        if shared:
            raise RuntimeError(f"{task}: {len(shared)} items in both tune and test")
        out.append({"tune": make(tune), "test": make(test)})
    return out


# --- one worker: one (task, fold, method) ---------------------------------------------------------


def _candidate_heads(model, method: str, args) -> list[tuple[int, int]]:
    """Every head the method's search could pick (the pool the random and all-heads controls use)."""
    shape = model.shape
    if method == "act":  # calibrate_act's default candidate layers
        layers = list(range(2, shape.num_layers - 1)) or list(range(shape.num_layers))
    else:
        layers = list(range(shape.num_layers))
    return [(layer, head) for layer in layers for head in range(shape.num_heads)]


def _groups(cal: dict) -> list[tuple[float | None, list[tuple[int, int]]]]:
    """The selected heads as (setting, heads) groups, in order (ACT: one group, setting None)."""
    groups: dict[str, tuple[float | None, list]] = {}
    for row in cal["heads"]:
        setting = row["score"] if cal["method"] == "zerotuning" else None
        groups.setdefault(row["group"], (setting, []))[1].append((int(row["layer"]), int(row["head"])))
    if cal["method"] == "act":
        return [(None, [h for _, heads in groups.values() for h in heads])] if groups else []
    return list(groups.values())


def random_groups(groups, pool, seed: int) -> list[tuple[float | None, list[tuple[int, int]]]]:
    """The same group sizes (and settings) drawn at random from ``pool`` minus the selected heads."""
    selected = {h for _, heads in groups for h in heads}
    free = [h for h in pool if h not in selected]
    need = sum(len(heads) for _, heads in groups)
    if need > len(free):
        raise RuntimeError(f"cannot draw {need} random heads: {len(free)} candidates outside the selection")
    drawn = random.Random(RANDOM_SEED_BASE + seed).sample(free, need)
    out, cursor = [], 0
    for setting, heads in groups:
        out.append((setting, sorted(drawn[cursor : cursor + len(heads)])))
        cursor += len(heads)
    return out


def build(method: str, groups, cal_params: dict) -> list:
    from workbench.analyses.calibration import act, zerotuning

    out = []
    for setting, heads in groups:
        if method == "act":
            out += act(heads, threshold=cal_params["threshold"], beta=cal_params["beta"])
        else:
            out += zerotuning(heads, setting)
    return out


def run_worker(args, job: dict) -> None:
    import workbench as wb
    from workbench.analyses.calibration import calibrate_act, calibrate_zerotuning, objective, score_task
    from workbench.analyses.calibration.tasks import resolve_mode

    start = time.time()
    deadline = job["deadline"]
    task, fold, method = job["task"], job["fold"], job["method"]
    name = f"{task}-fold{fold}-{method}"
    unit_path = args.out / "units" / f"{name}.json"
    state: dict = {"job": job, "units": [], "search": None}

    def say(text):
        print(f"[{name} {time.time() - start:6.1f}s] {text}", flush=True)

    def save():
        write_json(unit_path, state)

    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = not args.no_tf32
        torch.backends.cudnn.allow_tf32 = not args.no_tf32
    model = wb.load_model(args.model, device=args.device, dtype=torch.float32)
    split = splits(args, task)[fold]
    tune, test = split["tune"], split["test"]
    batch = {"batch_size": args.batch} if args.batch else {}
    common = {
        "task": task,
        "fold": fold,
        "method": method,
        "model": args.model,
        "n_tune": len(tune),
        "n_test": len(test),
        "mode": resolve_mode(model, test),
    }

    def evaluate(condition: str, groups, seed=None, extra=None):
        t0 = time.time()
        interventions = build(method, groups, params) if groups else []
        scores = score_task(model, test, interventions, **batch)
        correct = scores.correct.tolist()
        heads = [[setting, [list(h) for h in hs]] for setting, hs in groups]
        state["units"].append(
            {
                **common,
                "condition": condition,
                "seed": seed,
                "n_heads": sum(len(h) for _, h in groups),
                "groups": heads,
                "accuracy": sum(correct) / len(correct),
                "seconds": round(time.time() - t0, 2),
                "items": {"id": [i.id for i in test.items], "correct": correct},
                **(extra or {}),
            }
        )
        save()
        say(
            f"{condition}{'' if seed is None else f' seed {seed}'}: accuracy {scores.accuracy:.3f} ({time.time() - t0:.1f}s)"
        )
        return time.time() - t0

    params: dict = {"threshold": 0.1, "beta": 0.4}
    longest = evaluate("base", [])
    t0 = time.time()
    if method == "act":
        cal = calibrate_act(model, tune, kind=args.act_candidates, **batch)
    else:
        cal = calibrate_zerotuning(model, tune, kind=args.zt_candidates, **batch)
    params.update(cal["params"])
    groups = _groups(cal)
    # the search scores are accuracy + 1e-4 * margin; the tuning accuracies themselves, for the report
    tune_base = score_task(model, tune, [], **batch).accuracy
    tune_selected = (
        score_task(model, tune, build(method, groups, params), **batch).accuracy if groups else tune_base
    )
    state["search"] = {
        **common,
        "params": cal["params"],
        "seconds": round(time.time() - t0, 2),
        "evaluations": cal["search"]["evaluations"],
        "tune_baseline": tune_base,
        "tune_selected": tune_selected,
        "objective": {
            "baseline": cal["calibration"]["baseline"],
            "selected": cal["calibration"]["calibrated"],
        },
        "profile": cal["search"]["profile"],
        "greedy": cal["search"]["greedy"],
        "selected": [[s, [list(h) for h in hs]] for s, hs in groups],
        "extra": {k: v for k, v in cal["search"].items() if k not in ("profile", "greedy", "evaluations")},
    }
    save()
    say(
        f"search: {cal['search']['evaluations']} evaluations, tuning accuracy {tune_base:.3f} -> {tune_selected:.3f}, "
        f"{sum(len(h) for _, h in groups)} heads ({time.time() - t0:.1f}s)"
    )

    pool = _candidate_heads(model, method, args)
    plan = [("selected", groups, None)]
    plan += [("random", random_groups(groups, pool, seed), seed) for seed in job["seeds"]] if groups else []
    plan.append(("all", None, None))
    complete = True
    for condition, chosen, seed in plan:
        if time.time() + longest > deadline:
            say(f"budget reached: {condition} and later conditions not started")
            complete = False
            break
        extra = None
        if condition == "all":
            if method == "act":
                chosen = [(None, pool)]
            else:  # every head at the gamma that scores best on the tuning items
                tried = {
                    g: objective(score_task(model, tune, build(method, [(g, pool)], params), **batch))
                    for g in ALL_GAMMAS
                }
                best = max(ALL_GAMMAS, key=lambda g: (tried[g], -abs(g - 1)))
                chosen, extra = [(best, pool)], {"tune_scores": {f"{g:g}": v for g, v in tried.items()}}
        longest = max(longest, evaluate(condition, chosen, seed, extra))
    state["done"] = complete
    save()
    say("done" if complete else "stopped at the budget")


# --- estimate -------------------------------------------------------------------------------------


def estimate(args, model) -> dict:
    """Padded tokens per job (tokenizer only): tuning evaluations x tune tokens + test conditions x test tokens.
    ACT (layer candidates, 27 on SmolLM2): 1 + 27 + 1 + up to 4 + 3 greedy = 36 tuning evaluations at most;
    ZeroTuning (9 head indices): 1 + 9 + up to 6 + 5 greedy + 2 strengths + 4 all-head gammas = 27."""
    from workbench.analyses.calibration.tasks import _option_ids, _prompt_ids, resolve_mode

    shape = model.shape
    layers = len(range(2, shape.num_layers - 1))
    evals = {"act": 1 + layers + 1 + 4 + 3, "zerotuning": 1 + shape.num_heads + 6 + 5 + 2 + len(ALL_GAMMAS)}
    seeds = len(args.seeds.split(","))
    rows, total = [], 0
    for task in args.tasks.split(","):
        for fold, split in enumerate(splits(args, task)):
            counts = {}
            for part in ("tune", "test"):
                t = split[part]
                mode = resolve_mode(model, t)
                tokens = 0
                for item in t.items:
                    prompt = len(_prompt_ids(model, t, item.prompt))
                    tokens += (
                        prompt
                        if mode == "label"
                        else sum(prompt + len(_option_ids(model, o)) for o in item.options)
                    )
                counts[part] = tokens
            for method in args.methods.split(","):
                job = evals[method] * counts["tune"] + (3 + seeds) * counts["test"]
                rows.append(
                    {
                        "task": task,
                        "fold": fold,
                        "method": method,
                        "tune_items": len(split["tune"]),
                        "test_items": len(split["test"]),
                        "tune_tokens_per_eval": counts["tune"],
                        "test_tokens_per_eval": counts["test"],
                        "tuning_evaluations": evals[method],
                        "tokens": job,
                    }
                )
                total += job
    return {"jobs": rows, "tokens": total, "tflop_forward": round(2 * 106e6 * total / 1e12, 1)}


# --- the main process -----------------------------------------------------------------------------


def plan_jobs(args, started: float) -> tuple[list[dict], int]:
    """The (task, fold, method) jobs in the order given (put the longest first), and their number."""
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = []
    for task in args.tasks.split(","):
        for fold in range(TASK_FOLDS[task]):
            for method in args.methods.split(","):
                jobs.append(
                    {
                        "task": task,
                        "fold": fold,
                        "method": method,
                        "seeds": seeds,
                        "deadline": started + args.budget_s,
                    }
                )
    return jobs, len(jobs)


def protocol(args) -> dict:
    return {
        "tasks": args.tasks,
        "methods": args.methods,
        "model": args.model,
        "seeds": args.seeds,
        "clutrr_tune": args.clutrr_tune,
        "act_candidates": args.act_candidates,
        "zt_candidates": args.zt_candidates,
        "all_gammas": list(ALL_GAMMAS),
        "limit": args.limit,
        "split_seed": SPLIT_SEED,
        "random_seed_base": RANDOM_SEED_BASE,
        "smoke": args.smoke,
        "tf32": not args.no_tf32,
        "batch": args.batch,
        "command": "python3 benchmarks/calibration_gpu.py "
        + " ".join(a for a in sys.argv[1:] if not a.startswith("{")),
    }


def device_name(args) -> str:
    if args.device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def merge(args, started: float | None = None, expected: int | None = None) -> dict:
    units, searches, done = [], [], 0
    for path in sorted((args.out / "units").glob("*.json")):
        state = json.loads(path.read_text())
        units += state["units"]
        done += bool(state.get("done"))
        if state.get("search"):
            searches.append(state["search"])
    previous = (
        json.loads((args.out / "results.json").read_text()) if (args.out / "results.json").exists() else {}
    )
    result = {
        "protocol": previous.get("protocol") or protocol(args),
        "device": previous.get("device") or device_name(args),
        "torch": previous.get("torch") if started is None and previous.get("torch") else torch.__version__,  # a --merge elsewhere keeps the run's
        "finished": expected is not None and done == expected,  # every job ran to its end
        "jobs_expected": expected if expected is not None else previous.get("jobs_expected"),
        "jobs_done": done,
        "wall_seconds": round(time.time() - started, 1) if started else previous.get("wall_seconds"),
        "units": units,
        "searches": searches,
    }
    write_json(args.out / "results.json", result)
    return result


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
        label=lambda job: f"{job['task']}-fold{job['fold']}-{job['method']}",
    )
    result = merge(args, started, expected)
    print(
        f"done in {time.time() - started:.0f}s: {result['jobs_done']} of {expected} jobs complete, "
        f"{len(result['units'])} units in {args.out}/results.json",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
