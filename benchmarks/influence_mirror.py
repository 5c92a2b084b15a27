"""AttentionInfluence's sanity check (Hua et al. 2025, Table 6, the "mirror effect"): masking the top 5 % of
retrieval heads hurts key-value retrieval and in-context learning far more than masking as many random heads.
Spec §7, small reproduction step 2; the results feed docs/results/4-retrieval.md §5.

    python benchmarks/influence_mirror.py --out docs/results/data/influence/mirror-DATE \
        [--heads docs/results/data/retrieval/detection-heads-cpu.json] [--items 200] [--seeds 3] [--device cuda]

Conditions: the base model; the top ``--fraction`` of heads by retrieval score made uniform (a query of
zero, prefill and decode, as ``workbench influence`` masks them); ``--seeds`` fixed sets of as many random
heads from outside the top ``--exclude-top`` (seed s draws with ``random_heads(shape, k, s)``).

Tasks (every item is scored by one teacher-forced forward, so the drivers runs on CPU too):

* ``kv``: the paper's synthetic retrieval prompt. A JSON object of ``--pairs`` pairs, each key a random
  32-character alphanumeric hash, each value a sentence of at most 30 tokens from the NIAH essays; three
  demonstrations (key, value) from the same object, then the query key. Correct = the whole value is the
  greedy continuation (every value token is the argmax given the ones before it, which is what greedy
  decoding would produce); also the mean log-likelihood of the value's tokens.
* ``icl``: 8-shot sentiment classification of the shipped reviews (workbench/data/tasks/sentiment.csv,
  200 reviews): each review is the query once, its 8 demonstrations (4 per label, shuffled) drawn from the
  other reviews. Correct = the right label word (" positive" / " negative") has the higher next-token
  probability.

Writes ``results.json``: parameters, the heads, and per condition the per-item correctness (and the kv
log-likelihoods), so the report pairs the conditions item by item.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import string
import sys
import time
from pathlib import Path

import torch

from workbench.analyses.heads import read_heads_json, top_heads
from workbench.analyses.retrieval.influence import influence_heads
from workbench.analyses.retrieval.masking import random_heads
from workbench.jsonfiles import write_json
from workbench.runners.hf import load_model
from workbench.seam.interventions import mask_heads

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WORKBENCH_DATA", ROOT.parent / "shared" / "data"))
SENTIMENT = ROOT / "workbench" / "data" / "tasks" / "sentiment.csv"
INSTRUCTION = (
    "Please extract the value corresponding to the specified key from the following JSON object. Output only "
    "the value of the corresponding key and nothing else. The JSON data is as follows: "
)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="auto")
    p.add_argument("--heads", type=Path, default=ROOT / "docs/results/data/retrieval/detection-heads-cpu.json")
    p.add_argument("--fraction", type=float, default=0.05)
    p.add_argument("--exclude-top", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--items", type=int, default=200, help="kv prompts (icl uses all 200 reviews)")
    p.add_argument("--pairs", type=int, default=10, help="key-value pairs per JSON object")
    p.add_argument("--tasks", default="kv,icl")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated prompts")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default $WORKBENCH_DATA)")
    p.add_argument("--smoke", action="store_true", help="CPU check: tiny-gqa, 4 items")
    return p.parse_args(argv)


def essay_sentences(essays: Path, tokenizer, limit: int = 30) -> list[str]:
    sentences = []
    for path in sorted(essays.glob("*.txt")):
        text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if 40 <= len(sentence) and '"' not in sentence and len(tokenizer(sentence).input_ids) <= limit:
                sentences.append(sentence)
    if not sentences:
        sys.exit(f"no sentences in {essays}: the kv task needs ../shared/data/niah/essays (or --data)")
    return sentences


def kv_items(essays: Path, tokenizer, count: int, pairs: int, seed: int, limit: int = 30) -> list[dict]:
    rng = random.Random(seed)
    sentences = essay_sentences(essays, tokenizer, limit)
    alphabet = string.ascii_letters + string.digits
    items = []
    for number in range(count):
        keys = ["".join(rng.choice(alphabet) for _ in range(32)) for _ in range(pairs)]
        values = rng.sample(sentences, pairs)
        data = json.dumps(dict(zip(keys, values, strict=True)), ensure_ascii=False)
        order = rng.sample(range(pairs), 4)  # three demonstrations, then the query
        shots = "".join(f'\nkey: "{keys[i]}"\nanswer: {values[i]}\n' for i in order[:3])
        prompt = f'{INSTRUCTION}{data}\n{shots}\nkey: "{keys[order[3]]}"\nanswer:'
        items.append({"id": f"kv-{number}", "prompt": prompt, "answer": " " + values[order[3]]})
    return items


def icl_items(seed: int, shots: int = 8) -> list[dict]:
    with SENTIMENT.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = random.Random(seed)
    items = []
    for row in rows:
        others = [r for r in rows if r["id"] != row["id"]]
        demos = rng.sample([r for r in others if r["label"] == "positive"], shots // 2)
        demos += rng.sample([r for r in others if r["label"] == "negative"], shots // 2)
        rng.shuffle(demos)
        context = "".join(f"Review: {d['text']}\nSentiment: {d['label']}\n\n" for d in demos)
        items.append({"id": row["id"], "prompt": f"{context}Review: {row['text']}\nSentiment:",
                      "answer": 0 if row["label"] == "positive" else 1})
    return items


@torch.no_grad()
def score_kv(model, item, interventions) -> tuple[bool, float]:
    prompt = model.encode(item["prompt"])
    answer = model.tokenizer(item["answer"], add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([prompt, answer], dim=1)
    logits = model.logits(ids, interventions)[0, prompt.shape[1] - 1 : -1].float()
    target = answer[0].to(logits.device)
    exact = bool((logits.argmax(-1) == target).all())
    loglik = float(torch.log_softmax(logits, -1).gather(1, target[:, None]).mean())
    return exact, loglik


@torch.no_grad()
def score_icl(model, item, interventions, labels) -> bool:
    logits = model.logits(model.encode(item["prompt"]), interventions)[0, -1].float()
    return int(logits[labels].argmax()) == item["answer"]


def main(argv=None) -> int:
    args = parse(argv)
    started = time.time()
    name = "tiny-gqa" if args.smoke else args.model
    model = load_model(name, device=args.device)
    heads = read_heads_json(args.heads)
    shape = model.shape
    if args.smoke:  # the tiny model's heads: scores by position, so the run is deterministic
        from workbench.analyses.heads import make_head_table

        heads = make_head_table([{"layer": a, "head": b, "score": 1.0 - 0.01 * (a * shape.num_heads + b)}
                                 for a in range(shape.num_layers) for b in range(shape.num_heads)], "retrieval")
        args.items, args.exclude_top, args.pairs = 4, 3, 4
    top = influence_heads(heads, shape.num_layers * shape.num_heads, args.fraction)
    excluded = top_heads(heads, len(heads))[: max(args.exclude_top, len(top))]
    conditions = {"base": [], "top": top}
    for seed in range(args.seeds):
        conditions[f"random-{seed}"] = random_heads(shape, len(top), seed, excluded)
    tasks = {}
    wanted = args.tasks.split(",")
    if "kv" in wanted:
        tasks["kv"] = kv_items(args.data / "niah" / "essays", model.tokenizer, args.items, args.pairs, args.seed, 150 if args.smoke else 30)
    if "icl" in wanted:
        tasks["icl"] = icl_items(args.seed)[: args.items if args.smoke else None]
    labels = [model.tokenizer(w, add_special_tokens=False).input_ids[0] for w in (" positive", " negative")]
    result = {
        "model": name, "device": str(model.device), "heads_file": str(args.heads), "fraction": args.fraction,
        "exclude_top": args.exclude_top, "pairs": args.pairs, "seed": args.seed,
        "conditions": {c: [list(h) for h in hs] for c, hs in conditions.items()},
        "command": "python benchmarks/influence_mirror.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "tasks": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for task, items in tasks.items():
        tokens = [len(model.encode(i["prompt"])[0]) for i in items]
        entry = {"items": [i["id"] for i in items], "prompt_tokens": [min(tokens), max(tokens)], "conditions": {}}
        result["tasks"][task] = entry
        for condition, chosen in conditions.items():
            interventions = mask_heads(chosen, mode="uniform", scope="both") if chosen else []
            t0 = time.time()
            if task == "kv":
                scored = [score_kv(model, item, interventions) for item in items]
                entry["conditions"][condition] = {"correct": [int(c) for c, _ in scored],
                                                  "loglik": [round(v, 5) for _, v in scored]}
            else:
                entry["conditions"][condition] = {"correct": [int(score_icl(model, i, interventions, labels))
                                                              for i in items]}
            accuracy = sum(entry["conditions"][condition]["correct"]) / len(items)
            print(f"{task} {condition}: accuracy {accuracy:.3f} ({time.time() - t0:.0f} s)", flush=True)
            result["wall_seconds"] = round(time.time() - started, 1)
            write_json(args.out / "results.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
