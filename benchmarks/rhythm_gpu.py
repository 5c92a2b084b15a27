"""Preplan-and-anchor rhythm (spec §4) on arithmetic word problems the model can solve, on one GPU.

    source benchmarks/gpu_env.sh; source /tmp/wb-stage/env.sh
    python3 benchmarks/rhythm_gpu.py --out OUT [--budget-s 480]

1. Calibration: ``--calibration`` problems per level of ``workbench.analyses.rhythm.generator.LEVELS``
   (seed ``--calibration-seed``, never used for the main run), greedy answers, accuracy per level.
2. The level: the rule of ``choose_level``, fixed before any run: the hardest level whose calibration
   accuracy has a 95% Wilson lower bound >= 0.30; if none has, the most accurate level, flagged.
3. The main run: ``--problems`` new problems of that level (seed ``--seed``), greedy answers (batched,
   left-padded), one extra forward per response through the seam (``--capture-batch`` responses per
   forward, right-padded), the spec's tests (a)-(d) with shuffled controls (workbench/analyses/rhythm/
   checks.py), the perturbation test included.

Written as it goes: ``calibration.json`` after every level, ``summary.json`` (the tests, accuracy, the
level rule's record) and ``tokens.parquet`` at the end; ``results.json`` is the merged record the report
reads (``--merge`` rebuilds it from the other two). ``--smoke``: tiny-gqa on the CPU, 2 levels, few
problems. ``--estimate``: the number of generated tokens and forwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from workbench.jsonfiles import write_json


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--levels", default=None, help="indices into LEVELS (default: all)")
    p.add_argument("--calibration", type=int, default=128, help="problems per level for the calibration")
    p.add_argument("--calibration-seed", type=int, default=1000)
    p.add_argument("--problems", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, default=0.30)
    p.add_argument(
        "--prompt",
        default="worked-examples",
        choices=("worked-examples", "instruction"),
        help="the chat message: one worked example + the question, or question + instruction",
    )
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--generate-batch", type=int, default=128)
    p.add_argument("--capture-batch", type=int, default=32)
    p.add_argument("--shuffles", type=int, default=1000)
    p.add_argument("--continuation", type=int, default=16, help="greedy tokens compared in test (d)")
    p.add_argument("--budget-s", type=float, default=480, help="no phase starts that would end after this")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--estimate", action="store_true")
    p.add_argument("--merge", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.device, args.levels = "tiny-gqa", "cpu", "0,1"
        args.calibration, args.problems, args.max_new_tokens, args.shuffles = 4, 6, 40, 50
        args.generate_batch, args.capture_batch, args.continuation = 8, 4, 8
    return args


def level_indices(args) -> list[int]:
    from workbench.analyses.rhythm.generator import LEVELS

    return [int(x) for x in args.levels.split(",")] if args.levels else list(range(len(LEVELS)))


def protocol(args) -> dict:
    from workbench.analyses.rhythm.generator import LEVELS, worked_examples

    keys = (
        "model",
        "prompt",
        "calibration",
        "calibration_seed",
        "problems",
        "seed",
        "target",
        "max_new_tokens",
        "shuffles",
        "continuation",
        "budget_s",
        "smoke",
    )
    out = {k: getattr(args, k) for k in keys}
    out["levels"] = {
        i: {"steps": LEVELS[i][0], "largest_operand": LEVELS[i][1], "operations": LEVELS[i][2]}
        for i in level_indices(args)
    }
    if args.prompt == "worked-examples":
        out["worked_examples"] = {i: worked_examples(LEVELS[i]) for i in level_indices(args)}
    out["rule"] = "hardest level whose calibration accuracy has a 95% Wilson lower bound >= target"
    out["command"] = "python3 benchmarks/rhythm_gpu.py " + " ".join(sys.argv[1:])
    return out


def device_name(args) -> str:
    if args.device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def _answers(model, problems, level, args):
    from workbench.analyses.rhythm.generator import LEVELS, chat_messages, encode_chat
    from workbench.analyses.rhythm.pipeline import generate_batch

    prompts = [encode_chat(model, chat_messages(p, LEVELS[level], args.prompt)) for p in problems]
    responses = generate_batch(model, prompts, args.max_new_tokens, batch_size=args.generate_batch)
    return prompts, responses


def calibrate(model, args, started, say) -> dict:
    from workbench.analyses.rhythm.generator import LEVELS, choose_level, generate_problems
    from workbench.analyses.rhythm.problems import is_correct

    record = {"levels": []}
    longest = 0.0
    for index in level_indices(args):
        if time.time() + longest > started + 0.4 * args.budget_s:
            say(f"calibration budget reached before level {index}")
            record["stopped_before_level"] = index
            break
        t0 = time.time()
        problems = generate_problems(LEVELS[index], args.calibration, seed=args.calibration_seed)
        _, responses = _answers(model, problems, index, args)
        texts = [model.tokenizer.decode(r.tolist(), skip_special_tokens=True) for r in responses]
        correct = [bool(is_correct(t, p.answer)) for t, p in zip(texts, problems, strict=True)]
        record["levels"].append(
            {
                "level": index,
                "steps": LEVELS[index][0],
                "largest_operand": LEVELS[index][1],
                "operations": LEVELS[index][2],
                "correct": sum(correct),
                "total": len(correct),
                "accuracy": sum(correct) / len(correct),
                "seconds": round(time.time() - t0, 1),
                "questions": [p.question for p in problems[:3]],
                "responses": texts[:3],
            }
        )
        write_json(args.out / "calibration.json", record)
        longest = max(longest, time.time() - t0)
        say(f"level {index} {LEVELS[index]}: {sum(correct)}/{len(correct)} correct ({time.time() - t0:.1f}s)")
    chosen = choose_level(
        {row["level"]: (row["correct"], row["total"]) for row in record["levels"]}, args.target
    )
    record["choice"] = {**chosen, "wilson_lower": {str(k): v for k, v in chosen["wilson_lower"].items()}}
    write_json(args.out / "calibration.json", record)
    return record


def main_run(model, args, level: int, started, say) -> dict:
    from workbench.analyses.rhythm import RhythmParams
    from workbench.analyses.rhythm.checks import (
        coupling_test,
        entropy_test,
        group_consistency,
        perturbation_check,
    )
    from workbench.analyses.rhythm.generator import LEVELS, generate_problems
    from workbench.analyses.rhythm.pipeline import analyse_batch, default_layers, perturbation_test
    from workbench.analyses.rhythm.summary import summarize, token_table

    params = RhythmParams()
    layers = default_layers(model)
    problems = generate_problems(LEVELS[level], args.problems, seed=args.seed)
    calibration_questions = {
        p.question for p in generate_problems(LEVELS[level], args.calibration, seed=args.calibration_seed)
    }
    overlap = sum(p.question in calibration_questions for p in problems)
    t0 = time.time()
    prompts, responses = _answers(model, problems, level, args)
    generate_s = time.time() - t0
    kept = [i for i, r in enumerate(responses) if r.numel() >= 2]
    t0 = time.time()
    rhythms = analyse_batch(
        model,
        [problems[i] for i in kept],
        [prompts[i] for i in kept],
        [responses[i] for i in kept],
        layers=layers,
        params=params,
        batch_size=args.capture_batch,
    )
    capture_s = time.time() - t0
    say(f"main: {len(rhythms)} responses generated ({generate_s:.0f}s) and captured ({capture_s:.0f}s)")
    perturbation, perturb_s = None, None
    if time.time() + generate_s < started + args.budget_s:
        t0 = time.time()
        perturbation = perturbation_test(
            model,
            rhythms,
            [prompts[i] for i in kept],
            continuation=args.continuation,
            seed=args.seed,
            batch_size=args.generate_batch,
        )
        perturb_s = time.time() - t0
    else:
        say("budget reached: perturbation test (d) not run")
    summary = summarize(
        rhythms,
        layers=layers,
        params=params,
        shuffles=args.shuffles,
        seed=args.seed,
        perturbation=perturbation,
    )
    preplan = [r.credit["is_preplan"] for r in rhythms]
    tests = {
        "a_local": group_consistency([r.local for r in rhythms], shuffles=args.shuffles, seed=args.seed),
        "a_global": group_consistency([r.global_ for r in rhythms], shuffles=args.shuffles, seed=args.seed),
        "b": entropy_test([r.entropy for r in rhythms], preplan, shuffles=args.shuffles, seed=args.seed),
        "c": coupling_test(
            [r.fai for r in rhythms],
            [r.delta for r in rhythms],
            fraction=params.anchor_fraction,
            lag=1,
            shuffles=args.shuffles,
            seed=args.seed,
        ),
        "d": perturbation_check(perturbation["trials"])
        if perturbation and perturbation.get("pairs")
        else None,
    }
    correct = [bool(r.correct) for r in rhythms]
    summary.update(
        {
            "level": level,
            "steps": LEVELS[level][0],
            "largest_operand": LEVELS[level][1],
            "operations": LEVELS[level][2],
            "problems": len(problems),
            "problems_also_in_calibration": overlap,
            "analysed": len(rhythms),
            "correct": sum(correct),
            "accuracy_all_problems": sum(correct) / len(problems),
            "tests": tests,
            "seconds": {
                "generate": round(generate_s, 1),
                "capture": round(capture_s, 1),
                "perturbation": None if perturb_s is None else round(perturb_s, 1),
            },
            "examples": [
                {"question": p.question, "answer": p.answer, "response": r.text, "correct": r.correct}
                for p, r in zip([problems[i] for i in kept[:5]], rhythms[:5], strict=True)
            ],
        }
    )
    token_table(rhythms).to_parquet(args.out / "tokens.parquet", index=False)
    write_json(args.out / "summary.json", summary)
    say(f"accuracy {sum(correct)}/{len(problems)}; tests written")
    return summary


def merge(args, started: float | None = None) -> dict:
    read = lambda name: json.loads((args.out / name).read_text()) if (args.out / name).exists() else None  # noqa: E731
    previous = read("results.json") or {}
    summary = read("summary.json")
    if summary is not None:
        summary = {k: v for k, v in summary.items() if k not in ("responses_text",)}
    result = {
        "protocol": previous.get("protocol") or protocol(args),
        "device": previous.get("device") or device_name(args),
        "torch": torch.__version__,
        "finished": summary is not None and summary["tests"].get("d") is not None,
        "wall_seconds": round(time.time() - started, 1) if started else previous.get("wall_seconds"),
        "calibration": read("calibration.json"),
        "main": summary,
    }
    write_json(args.out / "results.json", result)
    return result


def estimate(args) -> dict:
    levels = len(level_indices(args))
    return {
        "calibration_generations": levels * args.calibration,
        "main_generations": args.problems,
        "perturbation_generations": 2 * args.problems,
        "max_generated_tokens": (levels * args.calibration + args.problems) * args.max_new_tokens
        + 2 * args.problems * args.continuation,
        "generate_calls": -(-args.calibration // args.generate_batch) * levels
        + 3 * -(-args.problems // args.generate_batch),
        "capture_forwards": -(-args.problems // args.capture_batch),
    }


def main(argv=None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merge(args)
        return 0
    if args.estimate:
        print(json.dumps(estimate(args), indent=2))
        return 0
    import workbench as wb

    started = time.time()
    for name in ("calibration.json", "summary.json", "results.json", "tokens.parquet"):
        (args.out / name).unlink(missing_ok=True)

    def say(text):
        print(f"[rhythm {time.time() - started:6.1f}s] {text}", flush=True)

    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # greedy answers and statistics in plain fp32
    model = wb.load_model(args.model, device=args.device, dtype=torch.float32)
    merge(args, started)
    record = calibrate(model, args, started, say)
    merge(args, started)
    choice = record["choice"]
    say(f"chosen level {choice['level']} (meets target: {choice['meets_target']})")
    main_run(model, args, choice["level"], started, say)
    result = merge(args, started)
    say(f"done: {args.out}/results.json (finished: {result['finished']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
