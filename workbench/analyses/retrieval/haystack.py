"""Needle-in-a-haystack inputs: haystacks, needles, and the token-exact prompt of one run.

A haystack is a text file, a folder of ``.txt`` files (concatenated in name order), or the built-in
synthetic passkey haystack (filler sentences repeated, as in the passkey-retrieval task). Needles are
JSONL records ``{"needle", "question", "answer"}``. The prompt is assembled from token ids, so the
needle's position and the answer span are known exactly; nothing is re-tokenised after insertion.
"""

from __future__ import annotations

import importlib.resources
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from workbench.runners.hf import InputError

QUESTION_TEMPLATE = "Based on the content of the book, Question: {question}\nAnswer:"
SYNTHETIC = "synthetic"
_PLACEHOLDER = "\u2063HAYSTACK\u2063"


@dataclass(frozen=True)
class Needle:
    needle: str
    question: str
    answer: str

    def to_dict(self) -> dict:
        return {"needle": self.needle, "question": self.question, "answer": self.answer}


@dataclass(frozen=True)
class Haystack:
    """Haystack text plus where it came from (a path, or ``synthetic``)."""

    text: str
    source: str


@dataclass
class NiahPrompt:
    """One run's prompt. ``needle_span`` is where the needle sentence sits, ``answer_span`` the
    answer's tokens inside it ([start, end) token positions, found as the paper does)."""

    ids: torch.Tensor  # (prompt,)
    needle: Needle
    length: int
    depth: float
    insert_at: int  # token position of the needle in the prompt
    needle_span: tuple[int, int]
    answer_span: tuple[int, int]


def _data_file(name: str) -> str:
    return importlib.resources.files("workbench.data").joinpath("niah").joinpath(name).read_text(encoding="utf-8")


def builtin_needles(split: str = "detect") -> list[Needle]:
    """The shipped needles: ``detect`` (3, for detection) or ``heldout`` (8 others, for the causal check)."""
    name = {"detect": "needles.jsonl", "heldout": "heldout.jsonl"}.get(split)
    if name is None:
        raise InputError(f"unknown needle split {split!r}; choose detect or heldout")
    return parse_needles(_data_file(name), source=f"built-in {split} needles")


def parse_needles(text: str, source: str = "needles") -> list[Needle]:
    needles = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{source} line {number} is not JSON: {error}") from None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("needle", "question", "answer")):
            raise InputError(f'{source} line {number}: every needle needs string fields "needle", "question", "answer"')
        if not record["answer"].strip() or not record["needle"].strip():
            raise InputError(f"{source} line {number}: the needle and the answer must not be empty")
        needles.append(Needle(record["needle"], record["question"], record["answer"]))
    if not needles:
        raise InputError(f"{source} holds no needles; write one JSON object per line")
    return needles


def read_needles(path: Path | None, split: str = "detect") -> list[Needle]:
    if path is None:
        return builtin_needles(split)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"needles file {path} does not exist (JSONL with needle, question, answer)")
    return parse_needles(path.read_text(encoding="utf-8"), source=str(path))


def read_haystack(path: Path | str | None) -> Haystack:
    """A text file, a folder of .txt files, or None / "synthetic" for the built-in passkey filler."""
    if path is None or str(path) == SYNTHETIC:
        return synthetic_haystack()
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"the haystack folder {path} has no .txt files")
        text = "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    elif path.exists():
        text = path.read_text(encoding="utf-8", errors="replace")
    else:
        raise FileNotFoundError(f"haystack {path} does not exist (give a .txt file, a folder of them, or 'synthetic')")
    if len(text.split()) < 50:
        raise InputError(f"the haystack {path} is too short ({len(text.split())} words); give at least a few paragraphs")
    return Haystack(text, str(path))


def synthetic_haystack(repeats: int = 2000) -> Haystack:
    filler = _data_file("filler.txt").strip()
    return Haystack(" ".join([filler] * repeats), SYNTHETIC)


def passkey_needles(count: int = 3, seed: int = 0, digits: int = 5) -> list[Needle]:
    """Random pass keys in the passkey-retrieval wording (digits tokenise one per token)."""
    rng = random.Random(seed)
    needles = []
    for _ in range(count):
        key = "".join(str(rng.randrange(10)) for _ in range(digits))
        needles.append(
            Needle(f"The pass key is {key}. Remember it. {key} is the pass key.", "What is the pass key?", key)
        )
    return needles


class PromptBuilder:
    """Builds NIAH prompts for one model and haystack (the haystack is tokenised once)."""

    def __init__(self, model, haystack: Haystack, *, chat: bool | None = None):
        self.model = model
        self.tokenizer = model.tokenizer
        self.haystack = haystack
        self.chat = model.has_chat_template if chat is None else chat
        self._chars = 0
        self._ids: list[int] = []
        self._periods: dict[int, bool] = {}

    @property
    def haystack_ids(self) -> list[int]:
        """All haystack tokens (tokenises the whole text; ``tokens(n)`` tokenises only a prefix)."""
        return self.tokens(10**12)

    def tokens(self, count: int) -> list[int]:
        """At least ``count`` haystack tokens when the haystack has them (a prefix is tokenised, not all)."""
        text = self.haystack.text
        while len(self._ids) < count and self._chars < len(text):
            self._chars = min(len(text), max(16_000, 2 * self._chars, 8 * count))
            ids = self._encode(text[: self._chars])
            self._ids = ids if self._chars == len(text) else ids[:-1]  # the last token may be a cut word
        return self._ids

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _frame(self, question: str) -> tuple[list[int], list[int]]:
        """Token ids before and after the haystack (chat template, book tags, question)."""
        tail = "\n" + QUESTION_TEMPLATE.format(question=question)
        if self.chat:
            content = f"<book>{_PLACEHOLDER}</book>{tail}"
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
            before, after = text.split(_PLACEHOLDER)
        else:
            before, after = "", tail
        return (self._encode(before) if before else []), self._encode(after)

    def _ends_sentence(self, token: int) -> bool:
        if token not in self._periods:
            self._periods[token] = self.tokenizer.decode([token]).rstrip().endswith(".")
        return self._periods[token]

    def build(self, needle: Needle, length: int, depth: float) -> NiahPrompt:
        """A prompt of about ``length`` tokens with the needle at ``depth`` % of the haystack part."""
        if not 0 <= depth <= 100:
            raise InputError(f"depth must be a percentage in [0, 100], got {depth}")
        before, after = self._frame(needle.question)
        needle_ids = self._encode(" " + needle.needle.strip())
        budget = length - len(before) - len(after) - len(needle_ids)
        if budget < 16:
            raise InputError(
                f"context length {length} leaves {budget} haystack tokens after the template, question and needle; "
                f"use lengths of at least {length - budget + 64}"
            )
        available = self.tokens(budget)
        if budget > len(available):
            raise InputError(
                f"the haystack has {len(available)} tokens but length {length} needs {budget}; "
                "give a longer haystack or shorter --lengths"
            )
        context = available[:budget]
        insert = len(context) if depth >= 100 else int(len(context) * depth / 100)
        while 0 < insert < len(context) and not self._ends_sentence(context[insert - 1]):
            insert -= 1
        ids = before + context[:insert] + needle_ids + context[insert:] + after
        start = len(before) + insert
        needle_span = (start, start + len(needle_ids))
        answer_span = locate_answer(ids, [self._encode(" " + needle.answer.strip()), self._encode(needle.answer.strip())],
                                    needle_span)
        self.model.check_length(len(ids))
        return NiahPrompt(torch.tensor(ids), needle, length, float(depth), start, needle_span, answer_span)


def locate_answer(ids: list[int], candidates: list[list[int]], region: tuple[int, int]) -> tuple[int, int]:
    """The answer span [s, e): the answer's exact tokens inside the needle when they occur there, else the
    paper's rule (the first window of len(answer tokens) covering more than 90% of the answer's distinct
    ids). Searched from the needle's start, so a chance match in the haystack before it cannot be taken."""
    start, stop = region
    for answer_ids in candidates:
        width = len(answer_ids)
        for i in range(start, stop - width + 1):
            if ids[i : i + width] == answer_ids:
                return i, i + width
    for answer_ids in candidates:
        wanted = set(answer_ids)
        width = len(answer_ids)
        for i in range(start, max(start, stop - width) + 1):
            if len(set(ids[i : i + width]) & wanted) / len(wanted) > 0.9:
                return i, i + width
    raise InputError(f"the answer's tokens were not found inside the needle at {region}; the answer must be part of the needle")
