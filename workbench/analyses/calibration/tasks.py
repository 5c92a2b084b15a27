"""Multiple-choice tasks for calibration: items, loaders and the option scorer.

An item is a prompt, its options and the index of the right one. Two scoring modes:

* ``label``: one forward of the prompt; compare the next-token log-probabilities of each option's
  first token (ACT's and ZeroTuning's label-word protocol). Needs distinct first tokens.
* ``options``: one sequence per option (prompt + option); compare the summed (or mean) log-likelihood
  of the option's tokens. Sequences are batched with right padding, so key 0 stays the real first token.

Task names: ``sentiment`` (shipped in workbench/data/tasks), ``truthfulqa`` (TruthfulQA MC1 from
``<shared>/data/truthfulqa``: train -> calibration, val -> test) and ``clutrr`` (relation choice from
``<shared>/data/clutrr``: val -> calibration, test -> test), or a path to a task file (CSV or JSONL
with columns ``id, split, prompt, options, answer``; options a JSON list or ``|``-separated).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from workbench.analyses.batching import SCORE_BATCH
from workbench.runners.hf import InputError, Model

TASK_DIR = Path(__file__).resolve().parents[2] / "data" / "tasks"
SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
SPLITS = ("calibration", "test")
RELATIONS = [
    "aunt", "son-in-law", "grandfather", "brother", "sister", "father", "mother", "grandmother", "uncle",
    "daughter-in-law", "grandson", "granddaughter", "father-in-law", "mother-in-law", "nephew", "son",
    "daughter", "niece",
]


@dataclass(frozen=True)
class Item:
    id: str
    prompt: str
    options: tuple[str, ...]
    answer: int


@dataclass
class Task:
    name: str
    items: list[Item]
    mode: str = "auto"  # label | options | auto (label when first tokens are distinct)
    chat: bool = False
    length_norm: bool = False  # options mode: mean instead of summed log-likelihood
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def describe(self) -> dict:
        return {"task": self.name, "items": len(self.items), "mode": self.mode, "chat": self.chat,
                "length_norm": self.length_norm, **self.meta}


# --- loaders ----------------------------------------------------------------------------------


def _limit(items: list[Item], limit: int | None, seed: int = 0) -> list[Item]:
    if limit is None or limit >= len(items):
        return items
    rng = random.Random(seed)
    return sorted(rng.sample(items, limit), key=lambda item: items.index(item))


SENTIMENT_DEMOS = (
    "Review: The staff were kind and the room was spotless.\nSentiment: positive\n\n"
    "Review: The screen cracked on the first day.\nSentiment: negative\n\n"
)


def sentiment(split: str) -> Task:
    """The shipped sentiment task: label words " positive" / " negative" after two fixed demonstrations
    (zero-shot, SmolLM2-135M answers one label for every review)."""
    items = []
    with (TASK_DIR / "sentiment.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["split"] != split:
                continue
            prompt = f"{SENTIMENT_DEMOS}Review: {row['text']}\nSentiment:"
            items.append(Item(row["id"], prompt, (" positive", " negative"), 0 if row["label"] == "positive" else 1))
    return Task("sentiment", items, mode="label")


def truthfulqa(split: str, root: Path = SHARED_DATA) -> Task:
    """TruthfulQA MC1-style: the best answer against every listed incorrect answer (summed log-likelihood)."""
    import pandas as pd

    path = root / "truthfulqa" / ("train.csv" if split == "calibration" else "val.csv")
    if not path.exists():
        raise FileNotFoundError(f"TruthfulQA needs {path}; pass a task file instead (see workbench/data/tasks/README.md)")
    items = []
    for index, row in pd.read_csv(path).iterrows():
        wrong = [a.strip() for a in str(row["Incorrect Answers"]).split(";") if a.strip() and a.strip() != "nan"]
        if not wrong:
            continue
        options = tuple(" " + a for a in [str(row["Best Answer"]).strip(), *wrong])
        items.append(Item(f"tqa-{split}-{index}", f"Q: {row['Question']}\nA:", options, 0))
    return Task("truthfulqa", items, mode="options")


def clutrr(split: str, root: Path = SHARED_DATA, candidates: int = 4, seed: int = 0) -> Task:
    """CLUTRR relation choice: the true relation against ``candidates - 1`` others drawn per item (seeded)."""
    path = root / "clutrr" / ("val.json" if split == "calibration" else "test.json")
    if not path.exists():
        raise FileNotFoundError(f"CLUTRR needs {path}; pass a task file instead (see workbench/data/tasks/README.md)")
    rng = random.Random(seed)
    items = []
    for record in json.loads(path.read_text()):
        first, second = (name.strip(" '") for name in record["query"].strip("()").split(","))
        story = record["story"].replace("[", "").replace("]", "")
        others = [r for r in RELATIONS if r != record["target_text"]]
        options = [record["target_text"], *rng.sample(others, candidates - 1)]
        rng.shuffle(options)
        prompt = f"{story}\nQuestion: How is {second} related to {first}?\nAnswer: {second} is {first}'s"
        items.append(Item(record["id"], prompt, tuple(" " + o for o in options), options.index(record["target_text"])))
    return Task("clutrr", items, mode="options", meta={"candidates": candidates})


def task_file(path: Path, split: str) -> Task:
    """A user task file (data only): CSV or JSONL with id, split, prompt, options, answer."""
    if not path.exists():
        raise FileNotFoundError(f"task file {path} does not exist")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        raise InputError(f"task file {path} must be .csv or .jsonl")
    items = []
    for number, row in enumerate(rows, 1):
        missing = {"prompt", "options", "answer"} - set(row)
        if missing:
            raise InputError(f"{path} row {number} lacks column(s) {sorted(missing)}; need id, split, prompt, options, answer")
        if row.get("split", split) != split:
            continue
        options = row["options"]
        if isinstance(options, str):
            options = json.loads(options) if options.strip().startswith("[") else options.split("|")
        answer = int(row["answer"])
        if not 0 <= answer < len(options) or len(options) < 2:
            raise InputError(f"{path} row {number}: answer {answer} must index one of at least two options")
        items.append(Item(str(row.get("id", number)), str(row["prompt"]), tuple(str(o) for o in options), answer))
    return Task(path.stem, items, mode="auto")


NAMED_TASKS = ("sentiment", "truthfulqa", "clutrr")
"""The built-in tasks ``load_task`` knows by name; any other name is a .csv/.jsonl task file."""


def load_task(name: str, split: str = "calibration", limit: int | None = None, seed: int = 0) -> Task:
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    loaders = dict(zip(NAMED_TASKS, (sentiment, truthfulqa, clutrr), strict=True))
    if name in loaders:
        task = loaders[name](split)
    elif Path(name).suffix in (".csv", ".jsonl"):
        task = task_file(Path(name), split)
    else:
        raise InputError(f"unknown task {name!r}: use {sorted(loaders)} or a .csv/.jsonl task file")
    if not task.items:
        raise InputError(f"task {name!r} has no items in split {split!r}")
    task.items = _limit(task.items, limit, seed)
    task.meta.update({"split": split, "limit": limit})
    return task


# --- scoring ----------------------------------------------------------------------------------


@dataclass
class Scores:
    """Per-item option scores (log-likelihoods) and the answers; accuracy and margin follow."""

    scores: list[list[float]]
    answers: list[int]

    @property
    def correct(self) -> torch.Tensor:
        return torch.tensor([int(max(range(len(s)), key=s.__getitem__) == a) for s, a in zip(self.scores, self.answers, strict=True)])

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean())

    @property
    def margin(self) -> float:
        """Mean of (score of the right option - best other score): a smooth tie-breaker for accuracy."""
        gaps = [s[a] - max(v for i, v in enumerate(s) if i != a) for s, a in zip(self.scores, self.answers, strict=True)]
        return float(sum(gaps) / len(gaps))


def _prompt_ids(model: Model, task: Task, prompt: str) -> list[int]:
    return model.encode(prompt, chat=task.chat)[0].tolist()


def _option_ids(model: Model, option: str) -> list[int]:
    return model.tokenizer(option, add_special_tokens=False)["input_ids"]


def _forward(model: Model, sequences: list[list[int]], interventions, positions: list[int]) -> tuple[torch.Tensor, dict]:
    """Right-padded batch forward through the seam; log-probs (batch, kept, vocab) at ``positions`` only
    (the vocabulary projection of every other position is skipped), and position -> column. The log-probs
    stay on the model's device: callers gather the few they need there and copy those once."""
    length = max(len(s) for s in sequences)
    model.check_length(length)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(sequences), length), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    kwargs = {} if bool(mask.all()) else {"attention_mask": mask.to(model.device)}
    keep = sorted(set(positions))
    with torch.no_grad(), model.seam(None, interventions):
        logits = model.hf(input_ids=ids.to(model.device), use_cache=False,
                          logits_to_keep=torch.tensor(keep, device=model.device), **kwargs).logits
    return torch.log_softmax(logits.float(), dim=-1), {p: k for k, p in enumerate(keep)}


def _gather(logprobs: torch.Tensor, rows: list[int], columns: list[int], tokens: list[int]) -> torch.Tensor:
    """``logprobs[rows[i], columns[i], tokens[i]]`` for every i, as one indexing op on the model's device."""
    device = logprobs.device
    index = [torch.tensor(values, dtype=torch.long, device=device) for values in (rows, columns, tokens)]
    return logprobs[index[0], index[1], index[2]]


def resolve_mode(model: Model, task: Task) -> str:
    if task.mode != "auto":
        return task.mode
    for item in task.items:
        firsts = [_option_ids(model, o)[:1] for o in item.options]
        if any(not f for f in firsts) or len({f[0] for f in firsts}) < len(firsts):
            return "options"
    return "label"


def score_task(model: Model, task: Task, interventions=(), batch_size: int = SCORE_BATCH, progress: bool = False) -> Scores:
    """Score every option of every item with ``interventions`` active (no gradients)."""
    mode = resolve_mode(model, task)
    out: list[list[float]] = []
    if mode == "label":
        batches = range(0, len(task.items), batch_size)
        for start in tqdm(batches, desc=f"{task.name} (label)", disable=not progress, leave=False):
            chunk = task.items[start : start + batch_size]
            sequences = [_prompt_ids(model, task, item.prompt) for item in chunk]
            logprobs, column = _forward(model, sequences, interventions, [len(s) - 1 for s in sequences])
            rows, columns, tokens = [], [], []
            for row, (item, sequence) in enumerate(zip(chunk, sequences, strict=True)):
                firsts = [_option_ids(model, o)[0] for o in item.options]
                if len(set(firsts)) < len(firsts):
                    raise InputError(f"item {item.id}: options share a first token; score this task in 'options' mode")
                rows += [row] * len(firsts)
                columns += [column[len(sequence) - 1]] * len(firsts)
                tokens += firsts
            flat = _gather(logprobs, rows, columns, tokens).tolist()  # one copy per batch
            for item in chunk:
                out.append(flat[: len(item.options)])
                flat = flat[len(item.options) :]
        return Scores(out, [item.answer for item in task.items])
    # options mode: flatten (item, option) pairs, batch by length
    pairs = []
    for index, item in enumerate(task.items):
        prompt = _prompt_ids(model, task, item.prompt)
        for option in item.options:
            cont = _option_ids(model, option)
            if not cont:
                raise InputError(f"item {item.id}: option {option!r} has no tokens")
            pairs.append((index, prompt, cont))
    order = sorted(range(len(pairs)), key=lambda k: len(pairs[k][1]) + len(pairs[k][2]))
    values = [0.0] * len(pairs)
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=f"{task.name} (options)", disable=not progress, leave=False):
        chosen = order[start : start + batch_size]
        sequences = [pairs[k][1] + pairs[k][2] for k in chosen]
        needed = [list(range(len(pairs[k][1]) - 1, len(pairs[k][1]) - 1 + len(pairs[k][2]))) for k in chosen]
        logprobs, column = _forward(model, sequences, interventions, [p for ps in needed for p in ps])
        rows, columns, tokens = [], [], []
        for row, k in enumerate(chosen):
            rows += [row] * len(pairs[k][2])
            columns += [column[p] for p in needed[row]]
            tokens += pairs[k][2]
        token_logprobs = _gather(logprobs, rows, columns, tokens)
        slot = torch.tensor(rows, device=token_logprobs.device)
        sums = torch.zeros(len(chosen), dtype=token_logprobs.dtype, device=token_logprobs.device).index_add_(0, slot, token_logprobs)
        if task.length_norm:
            sums = sums / torch.tensor([len(pairs[k][2]) for k in chosen], dtype=sums.dtype, device=sums.device)
        for k, value in zip(chosen, sums.tolist(), strict=True):  # one copy per batch
            values[k] = value
    cursor = 0
    for item in task.items:
        out.append(values[cursor : cursor + len(item.options)])
        cursor += len(item.options)
    return Scores(out, [item.answer for item in task.items])
