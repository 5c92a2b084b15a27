"""Seeded multi-step arithmetic word problems with known answers, by difficulty level.

A level is ``(steps, largest operand, operations)``: a start amount, then ``steps`` changes drawn from
the operations (``add``: gets more, ``sub``: gives some away, ``boxes``: buys boxes of several items),
then the question. Every intermediate amount stays >= 0, so the answer is a whole number. The same
``(level, seed, count)`` always gives the same problems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from workbench.analyses.rhythm.problems import Problem

# (steps, largest operand, operations), easiest first: "hardest" in ``choose_level`` is the last index
LEVELS: tuple[tuple[int, int, str], ...] = (
    (1, 5, "add"),
    (1, 10, "add"),
    (1, 10, "add,sub"),
    (2, 10, "add"),
    (2, 10, "add,sub"),
    (2, 20, "add,sub"),
    (3, 20, "add,sub"),
    (3, 50, "add,sub,boxes"),
    (4, 100, "add,sub,boxes"),
)
OPERATIONS = ("add", "sub", "boxes")
NAMES = ("Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Leo")
ITEMS = ("apples", "marbles", "stickers", "books", "pencils", "cookies", "shells", "coins", "stamps", "cards")
FRIENDS = ("a friend", "a cousin", "a neighbour", "the teacher", "a classmate")


@dataclass(frozen=True)
class Level:
    steps: int
    largest: int
    operations: str = "add,sub"

    def __post_init__(self):
        if self.steps < 1 or self.largest < 2:
            raise ValueError(f"a level needs steps >= 1 and largest operand >= 2, got {self}")
        if not self.kinds or set(self.kinds) - set(OPERATIONS):
            raise ValueError(f"operations must be a comma list of {OPERATIONS}, got {self.operations!r}")

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in self.operations.split(",") if k)

    @property
    def name(self) -> str:
        return f"s{self.steps}-m{self.largest}-{self.operations.replace(',', '')}"


def make_problem(level: Level, rng: random.Random, index: int) -> Problem:
    return _make(level, rng, index)[0]


def _make(level: Level, rng: random.Random, index: int) -> tuple[Problem, str]:
    """A problem and its worked solution (one sentence per step, then ``#### answer``)."""
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    amount = rng.randint(2, level.largest)
    sentences = [f"{name} has {amount} {items}."]
    solution = [f"{name} starts with {amount} {items}."]
    for _ in range(level.steps):
        kind = rng.choice(level.kinds)
        if kind == "sub" and amount < 2:
            kind = "add"
        before = amount
        if kind == "add":
            value = rng.randint(2, level.largest) if level.largest > 2 else 2
            amount += value
            sentences.append(f"Then {name} gets {value} more {items}.")
            solution.append(f"{name} gets {value} more, so {name} has {before} + {value} = {amount} {items}.")
        elif kind == "sub":
            value = rng.randint(1, min(amount, level.largest))
            amount -= value
            sentences.append(f"Then {name} gives {value} {items} to {rng.choice(FRIENDS)}.")
            solution.append(
                f"{name} gives {value} away, so {name} has {before} - {value} = {amount} {items}."
            )
        else:
            boxes, each = rng.randint(2, 5), rng.randint(2, max(2, level.largest // 5))
            amount += boxes * each
            sentences.append(f"Then {name} buys {boxes} boxes with {each} {items} in each box.")
            solution.append(
                f"{name} buys {boxes} x {each} = {boxes * each} {items}, so {name} has "
                f"{before} + {boxes * each} = {amount} {items}."
            )
    sentences.append(f"How many {items} does {name} have now?")
    problem = Problem(f"arith-{level.name}-{index:04d}", " ".join(sentences), f"#### {amount}")
    return problem, " ".join(solution) + f"\n#### {amount}"


def generate_problems(level: Level | tuple, count: int, seed: int) -> list[Problem]:
    level = level if isinstance(level, Level) else Level(*level)
    rng = random.Random(f"{seed}-{level.name}")
    return [make_problem(level, rng, i) for i in range(count)]


def worked_examples(level: Level | tuple, count: int = 2) -> list[tuple[str, str]]:
    """``count`` (question, worked solution) pairs of ``level`` from their own seed ("examples"), which no
    calibration or main-run seed (integers) can give."""
    level = level if isinstance(level, Level) else Level(*level)
    rng = random.Random(f"examples-{level.name}")
    return [(p.question, solution) for p, solution in (_make(level, rng, i) for i in range(count))]


def wilson_lower(successes: int, total: int, z: float = 1.959964) -> float:
    """Lower end of the Wilson score interval of a proportion (95% by default); 0 for no trials."""
    if total == 0:
        return 0.0
    p = successes / total
    centre = p + z * z / (2 * total)
    spread = z * ((p * (1 - p) + z * z / (4 * total)) / total) ** 0.5
    return (centre - spread) / (1 + z * z / total)


def choose_level(accuracy: dict[int, tuple[int, int]], target: float = 0.30) -> dict:
    """The rule fixed before any run: the hardest level (highest index in ``LEVELS`` order) whose
    calibration accuracy has a 95% Wilson lower bound >= ``target``; when none has, the level with the
    highest accuracy, flagged ``meets_target=False``. ``accuracy`` maps level index -> (correct, total)."""
    bounds = {i: wilson_lower(c, n) for i, (c, n) in accuracy.items()}
    passing = [i for i, b in bounds.items() if b >= target]
    if passing:
        chosen, meets = max(passing), True
    else:
        chosen, meets = max(accuracy, key=lambda i: (accuracy[i][0] / max(1, accuracy[i][1]), -i)), False
    return {"level": chosen, "meets_target": meets, "target": target, "wilson_lower": bounds}


# The prompt: two worked examples of the same level as earlier chat turns (two-shot), then the question.
# With the bare instruction SmolLM2-135M double-counts even one-step problems (a CPU probe of 8 problems:
# 1/8 correct at one addition of operands <= 5, 3/8 at one step <= 10, 0/8 from two steps on); with one
# fixed example mixing + and - it still confused the operations (2/8 at one step <= 10).
PROMPT_STYLES = ("worked-examples", "instruction")


def chat_messages(problem: Problem, level: Level | tuple, style: str = "worked-examples") -> list[dict]:
    """The chat turns for ``problem``: two worked examples of ``level`` then the question (each user turn
    is question + the rhythm job's instruction), or the rhythm job's single plain turn."""
    if style == "instruction":
        return [{"role": "user", "content": problem.prompt()}]
    if style != "worked-examples":
        raise ValueError(f"unknown prompt style {style!r}; choose one of {PROMPT_STYLES}")
    turns = []
    for question, solution in worked_examples(level):
        turns += [
            {"role": "user", "content": Problem("example", question).prompt()},
            {"role": "assistant", "content": solution},
        ]
    return turns + [{"role": "user", "content": problem.prompt()}]


def encode_chat(model, messages: list[dict]):
    """Token ids (T,) of chat turns with the generation prompt: the model's chat template, or for a model
    without one (the tiny test models) the turns as ``role: content`` lines ending in ``assistant:``."""
    if model.has_chat_template:
        text = model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    ids = model.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    model.check_length(int(ids.numel()))
    return ids
