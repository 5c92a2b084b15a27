"""Word problems in JSONL (GSM8K layout: ``question`` and ``answer`` ending in ``#### N``).

The workbench ships a dozen arithmetic problems of its own (``workbench/data/problems``); any JSONL file
with a ``question`` (or ``problem`` / ``prompt``) field per line works.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.runners.hf import InputError

INSTRUCTION = "Solve it step by step, then give the final answer after ####."
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str | None = None

    def prompt(self, instruction: str = INSTRUCTION) -> str:
        return f"{self.question}\n{instruction}" if instruction else self.question


def bundled_problems_path() -> Path:
    return Path(str(importlib.resources.files("workbench").joinpath("data/problems/arithmetic.jsonl")))


def load_problems(path: Path | str | None = None, limit: int | None = None) -> list[Problem]:
    """Read problems from JSONL (default: the bundled ones); bad lines raise InputError naming the line."""
    path = Path(path) if path is not None else bundled_problems_path()
    if not path.exists():
        raise FileNotFoundError(f"problems file {path} does not exist")
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{path}:{number} is not valid JSON ({error}); expected one object per line"
            ) from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object with a 'question' field")
        question = next(
            (record[k] for k in ("question", "problem", "prompt") if isinstance(record.get(k), str)), None
        )
        if not question or not question.strip():
            raise InputError(f"{path}:{number}: no 'question' (or 'problem'/'prompt') text")
        answer = record.get("answer")
        problems.append(
            Problem(
                str(record.get("id", f"{path.stem}-{number}")),
                question.strip(),
                None if answer is None else str(answer),
            )
        )
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise InputError(f"{path} has no problems")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise InputError(f"{path}: problem ids must be unique; repeated: {duplicated}")
    return problems


def final_number(text: str | None) -> float | None:
    """The number after '####' if present, else the last number in the text."""
    if not text:
        return None
    tail = text.split("####", 1)[1] if "####" in text else text
    found = _NUMBER.findall(tail)
    if not found:
        return None
    chosen = found[0] if "####" in text else found[-1]
    try:
        return float(chosen.replace(",", ""))
    except ValueError:
        return None


def is_correct(response: str, answer: str | None) -> bool | None:
    gold = final_number(answer)
    if gold is None:
        return None
    predicted = final_number(response)
    return predicted is not None and abs(predicted - gold) < 1e-6
