"""LoFiT task data: TruthfulQA-style multiple choice (DPO pairs) and prompt/completion SFT items.

Accepted files (data only: CSV, JSON, JSONL; never pickle):

* ``truthfulqa`` task - one question per row with columns ``question``, ``best_answer``,
  ``correct_answers``, ``incorrect_answers`` (the TruthfulQA CSV headers ``Question``, ``Best Answer``,
  ``Correct Answers``, ``Incorrect Answers`` are the same columns: names are matched case- and
  space-insensitively). In CSV the answer lists are separated by ``;``; in JSON/JSONL they may be lists.
* ``clutrr`` task - either CLUTRR records (``story`` or ``clean_story``, ``query`` as
  ``"('Anna', 'Bob')"``, ``target_text``) or any ``prompt``, ``completion`` rows (your own SFT data).

Splits: ``part=(i, n)`` keeps the i-th (1-based) of n disjoint parts after a fixed seeded shuffle of
the rows, so one file can hold a training part and a held-out part without overlap.
"""

from __future__ import annotations

import ast
import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from workbench import paths
from workbench.seam.spec import SpecError

TASKS = ("truthfulqa", "clutrr")
SPLIT_SEED = 1234  # fixed: parts of a file are the same on every run and machine
QA_TEMPLATE = "Q: {question}\nA:"
KINSHIP_TEMPLATE = "{story}\nQuestion: How is {second} related to {first}?\nAnswer: {second} is {first}'s"

SAMPLE_DIR = paths.package_data("lofit")


@dataclass(frozen=True)
class MCQuestion:
    """One TruthfulQA question: the prompt and its answer options (each scored by likelihood)."""

    question: str
    best_answer: str
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]

    @property
    def prompt(self) -> str:
        return QA_TEMPLATE.format(question=self.question)

    def preference_pairs(self) -> list[tuple[str, str, str]]:
        """(prompt, chosen, rejected) pairs, as in LoFiT: true and false answers zipped to equal length."""
        chosen = [self.best_answer] + [a for a in self.correct_answers if a != self.best_answer]
        rejected = list(self.incorrect_answers)
        n = min(len(chosen), len(rejected))
        return [(self.prompt, " " + chosen[i], " " + rejected[i]) for i in range(n)]


@dataclass(frozen=True)
class Completion:
    """One SFT item: the loss and the accuracy look only at ``completion`` (starts with its space)."""

    prompt: str
    completion: str


def _key(name: str) -> str:
    return "_".join(str(name).strip().lower().replace("-", " ").split())


def read_rows(path: Path) -> list[dict]:
    """Rows of a CSV, JSON (list of objects) or JSONL file, with normalised column names."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif suffix == ".json":
            rows = json.loads(text)
            if isinstance(rows, dict):
                rows = rows.get("data") or rows.get("items") or rows.get("rows")
        else:
            raise SpecError(f"{path}: unsupported data format {suffix!r}; give .csv, .json or .jsonl")
    except (json.JSONDecodeError, csv.Error) as error:
        raise SpecError(f"{path} could not be parsed: {error}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SpecError(f"{path}: expected a list of records (objects or CSV rows)")
    if not rows:
        raise SpecError(f"{path} has no rows")
    return [{_key(k): v for k, v in row.items() if k is not None} for row in rows]


def _close(answer: str) -> str:
    """TruthfulQA scores answers as sentences: a missing final period is added."""
    answer = answer.strip()
    return answer if not answer or answer.endswith(".") else answer + "."


def _answers(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        items = value
    else:
        items = str(value).split(";")
    return tuple(_close(s) for s in (str(a).strip() for a in items) if s)


def _take_part(rows: list, part: tuple[int, int] | None) -> list:
    if part is None:
        return rows
    index, count = part
    if not (count >= 1 and 1 <= index <= count):
        raise SpecError(f"part must be i/n with 1 <= i <= n, got {index}/{count}")
    order = list(range(len(rows)))
    random.Random(SPLIT_SEED).shuffle(order)
    keep = sorted(order[index - 1 :: count])
    return [rows[i] for i in keep]


def parse_part(value: str | None) -> tuple[int, int] | None:
    """``"2/3"`` -> (2, 3); None stays None."""
    if not value:
        return None
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise SpecError(f"--part must look like i/n (e.g. 1/2), got {value!r}") from None
    _take_part([], (index, count))  # validates
    return index, count


def load_truthfulqa(
    path: Path, part: tuple[int, int] | None = None, limit: int | None = None
) -> list[MCQuestion]:
    rows = read_rows(path)
    needed = {"question", "best_answer", "incorrect_answers"}
    missing = needed - set(rows[0])
    if missing:
        raise SpecError(
            f"{path}: the truthfulqa task needs columns question, best_answer, correct_answers, "
            f"incorrect_answers; missing {sorted(missing)} (found {sorted(rows[0])})"
        )
    questions = []
    for number, row in enumerate(rows, 1):
        best = _close(str(row.get("best_answer") or ""))
        incorrect = _answers(row.get("incorrect_answers"))
        if not str(row.get("question") or "").strip() or not best or not incorrect:
            raise SpecError(
                f"{path} row {number}: question, best_answer and incorrect_answers must be non-empty"
            )
        correct = _answers(row.get("correct_answers")) or (best,)
        questions.append(MCQuestion(str(row["question"]).strip(), best, correct, incorrect))
    questions = _take_part(questions, part)
    return questions[:limit] if limit else questions


def _clutrr_item(row: dict) -> Completion:
    story = str(row.get("clean_story") or row.get("story") or "").replace("[", "").replace("]", "")
    try:
        first, second = ast.literal_eval(str(row["query"]))
    except (ValueError, SyntaxError, TypeError):
        raise SpecError(
            f"CLUTRR query must look like \"('Anna', 'Bob')\", got {row.get('query')!r}"
        ) from None
    prompt = KINSHIP_TEMPLATE.format(story=story.strip(), first=first, second=second)
    return Completion(prompt, " " + str(row["target_text"]).strip())


def load_completions(
    path: Path, part: tuple[int, int] | None = None, limit: int | None = None
) -> list[Completion]:
    rows = read_rows(path)
    columns = set(rows[0])
    items = []
    for number, row in enumerate(rows, 1):
        if {"prompt", "completion"} <= columns:
            prompt, completion = str(row["prompt"]), str(row["completion"])
            if completion and not completion[0].isspace():
                completion = " " + completion
            item = Completion(prompt, completion)
        elif {"query", "target_text"} <= columns and ({"story"} & columns or {"clean_story"} & columns):
            item = _clutrr_item(row)
        else:
            raise SpecError(
                f"{path}: the clutrr task needs columns prompt, completion (or CLUTRR's story, query, "
                f"target_text); found {sorted(columns)}"
            )
        if not item.prompt.strip() or not item.completion.strip():
            raise SpecError(f"{path} row {number}: prompt and completion must be non-empty")
        items.append(item)
    items = _take_part(items, part)
    return items[:limit] if limit else items


def load_task(task: str, path: Path, part=None, limit: int | None = None):
    """Questions (truthfulqa) or completions (clutrr) from ``path``."""
    if task == "truthfulqa":
        return load_truthfulqa(path, part, limit)
    if task == "clutrr":
        return load_completions(path, part, limit)
    raise SpecError(f"unknown task {task!r}; choose one of {TASKS}")


def sample_path(task: str) -> Path:
    """The small sample file shipped with the workbench for ``task`` (own text / generated)."""
    names = {"truthfulqa": "truthful_sample.csv", "clutrr": "kinship_sample.jsonl"}
    if task not in names:
        raise SpecError(f"unknown task {task!r}; choose one of {TASKS}")
    return SAMPLE_DIR / names[task]
