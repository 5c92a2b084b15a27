"""Loaders: TruthfulQA CSV, CLUTRR JSON, user CSV/JSONL, disjoint parts, clear errors."""

import json
from pathlib import Path

import pytest

from workbench.analyses import lofit
from workbench.analyses.lofit.data import Completion, MCQuestion, load_completions, load_truthfulqa
from workbench.seam.spec import SpecError

SHARED = Path(__file__).resolve().parents[3] / "shared"


def test_shipped_samples_load():
    questions = lofit.load_task("truthfulqa", lofit.sample_path("truthfulqa"))
    assert len(questions) >= 20 and all(isinstance(q, MCQuestion) for q in questions)
    assert all(q.best_answer.endswith(".") and q.incorrect_answers for q in questions)
    items = lofit.load_task("clutrr", lofit.sample_path("clutrr"))
    assert len(items) == 200 and all(isinstance(i, Completion) for i in items)
    assert items[0].prompt.endswith("'s") and items[0].completion.startswith(" ")


def test_truthfulqa_user_jsonl_with_lists_and_loose_column_names(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {
            "Question": "Is the sky green?",
            "best answer": "No",
            "Correct-Answers": ["No", "No, it is blue"],
            "incorrect_answers": ["Yes", "Yes, always"],
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    [question] = load_truthfulqa(path)
    assert question.prompt == "Q: Is the sky green?\nA:"
    assert question.correct_answers == ("No.", "No, it is blue.")
    pairs = question.preference_pairs()
    assert pairs == [
        (question.prompt, " No.", " Yes."),
        (question.prompt, " No, it is blue.", " Yes, always."),
    ]


def test_prompt_completion_csv_and_clutrr_record(tmp_path):
    path = tmp_path / "sft.csv"
    path.write_text("prompt,completion\nTwo plus two is,four\n")
    [item] = load_completions(path)
    assert item == Completion("Two plus two is", " four")
    clutrr = tmp_path / "c.json"
    clutrr.write_text(
        json.dumps([{"story": "[Ann] hugged her son [Bo].", "query": "('Ann', 'Bo')", "target_text": "son"}])
    )
    [kin] = load_completions(clutrr)
    assert "Ann hugged her son Bo." in kin.prompt and "[" not in kin.prompt
    assert kin.prompt.endswith("How is Bo related to Ann?\nAnswer: Bo is Ann's") and kin.completion == " son"


def test_parts_are_disjoint_and_cover_the_file():
    path = lofit.sample_path("clutrr")
    whole = load_completions(path)
    parts = [load_completions(path, part=(i, 3)) for i in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(whole)
    assert set.union(*(set(p) for p in parts)) == set(whole)
    assert not set(parts[0]) & set(parts[1])
    assert load_completions(path, part=(2, 3)) == parts[1]  # same split every time


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("question,best_answer\nq,a\n", ".csv", "incorrect_answers"),
        ("a,b\n1,2\n", ".csv", "prompt, completion"),
        ("{not json", ".json", "could not be parsed"),
        ("x", ".txt", "unsupported data format"),
    ],
)
def test_bad_files_name_the_fix(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    task = "truthfulqa" if "question" in content else "clutrr"
    with pytest.raises(SpecError, match=message):
        lofit.load_task(task, path)


def test_bad_part_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="i/n"):
        lofit.parse_part("3/2")
    with pytest.raises(FileNotFoundError):
        lofit.load_task("clutrr", tmp_path / "missing.json")


@pytest.mark.skipif(not (SHARED / "data" / "truthfulqa" / "train.csv").exists(), reason="no ../shared data")
def test_shared_data_formats_load():
    train = lofit.load_task("truthfulqa", SHARED / "data" / "truthfulqa" / "train.csv")
    assert len(train) == 326
    assert sum(len(q.preference_pairs()) for q in train) > 326
    test = lofit.load_task("clutrr", SHARED / "data" / "clutrr" / "test.json")
    assert len(test) == 450 and all(i.completion.strip() for i in test)
