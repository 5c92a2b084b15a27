"""The rhythm job on the tiny GQA model: seam statistics vs exact attention rows, batched generation,
the CLI outputs, bad input, and the figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from rhythm_planted import reference_rhythm
from typer.testing import CliRunner

from workbench.analyses.rhythm import RhythmParams, analyse_response, rhythm_figure
from workbench.analyses.rhythm.pipeline import generate_batch
from workbench.analyses.rhythm.problems import Problem, is_correct, load_problems
from workbench.cli import app
from workbench.seam.spec import CaptureSpec

QUESTION = "A shop sells 3 pens for 2 dollars. How much do 12 pens cost?"


def test_analyse_response_matches_exact_attention_rows(tiny):
    prompt = tiny.encode(QUESTION)[0]
    new_ids = generate_batch(tiny, [prompt], 40)[0]
    assert new_ids.numel() >= 20
    params = RhythmParams(fai_window=(4, 12))
    result = analyse_response(tiny, Problem("p", QUESTION), prompt, new_ids, layers=(0, 1), params=params)
    ids = torch.cat([prompt, new_ids])[None]
    total = ids.shape[-1]
    logits, cap = tiny.run(ids, CaptureSpec(statistics=(), rows=tuple(range(total))))
    maps = torch.stack([cap.rows[i][0] for i in range(total)], dim=-2).double().numpy()  # (layer, head, q, k)
    reference = reference_rhythm(maps, result.local, result.global_, prompt.numel(), fai_window=(4, 12))
    np.testing.assert_allclose(result.distance, reference["distance"], rtol=1e-4)
    np.testing.assert_allclose(result.waad, reference["waad"], rtol=1e-4, atol=1e-6)
    assert np.array_equal(np.isnan(result.fai), np.isnan(reference["fai"]))
    np.testing.assert_allclose(result.fai, reference["fai"], rtol=1e-4, atol=1e-7)
    assert np.isnan(result.fai[-4:]).all() and np.isfinite(result.fai[:-4]).all()
    # entropies: the distribution that produced token t sits at absolute position t - 1
    log_probs = torch.log_softmax(logits[0].double(), -1)
    entropy = -(log_probs.exp() * log_probs).sum(-1).numpy()
    start = prompt.numel()
    np.testing.assert_allclose(result.entropy, entropy[start - 1 : total - 1], rtol=1e-6)
    np.testing.assert_allclose(result.entropy_next, entropy[start:], rtol=1e-6)
    assert result.top_ids[0, 0] == int(logits[0, start - 1].argmax()) == int(new_ids[0])  # greedy


def test_batched_generation_equals_model_generate(tiny):
    prompts = [tiny.encode(t)[0] for t in ("hello there, how are you", "a", QUESTION)]
    batched = generate_batch(tiny, prompts, 12, batch_size=3)
    for prompt, ids in zip(prompts, batched, strict=True):
        assert ids.tolist() == tiny.generate(prompt, max_new_tokens=12).new_ids.tolist()


def test_problems_loading_and_answers(tmp_path):
    bundled = load_problems()
    assert len(bundled) >= 10 and all(p.answer and "####" in p.answer for p in bundled)
    assert is_correct("so the total is 7.\n#### 7", bundled[0].answer)
    assert not is_correct("#### 8", bundled[0].answer)
    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "What is 2 + 2?", "answer": "#### 4"}\n\n{"question": "What is 3 + 3?"}\n')
    items = load_problems(path)
    assert [p.question for p in items] == ["What is 2 + 2?", "What is 3 + 3?"]
    assert load_problems(path, limit=1)[0].answer == "#### 4"


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rhythm")
    out = root / "out"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("WORKBENCH_RESULTS", str(root / "results"))
    problems = root / "problems.jsonl"
    problems.write_text(
        "\n".join(
            json.dumps({"id": f"q{i}", "question": QUESTION.replace("12", str(12 + i)), "answer": "#### 8"})
            for i in range(3)
        )
    )
    args = [
        "rhythm",
        "tiny-gqa",
        "--problems",
        str(problems),
        "--out",
        str(out),
        "--max-new-tokens",
        "48",
        "--instruction",
        "",
    ]
    result = CliRunner().invoke(app, [*args, "--perturb", "--shuffles", "200"])
    monkeypatch.undo()
    return result, out, root


def test_cli_writes_tokens_and_summary(cli_run):
    result, out, root = cli_run
    assert result.exit_code == 0, result.output
    tokens = pd.read_parquet(out / "tokens.parquet")
    expected = [
        "problem", "position", "token", "waad", "fai", "is_preplan", "is_anchor",
        "credit_local", "credit_global", "credit_coupled",
    ]  # fmt: skip
    assert list(tokens.columns[: len(expected)]) == expected
    summary = json.loads((out / "summary.json").read_text())
    assert summary["responses"] == tokens["problem"].nunique() >= 1
    for problem, rows in tokens.groupby("problem"):
        assert rows["position"].tolist() == list(range(len(rows)))
        preplan = rows["is_preplan"].to_numpy()
        assert np.allclose(rows["credit_local"], np.where(preplan, 1.5, 1.0))
        assert np.allclose(rows["credit_global"], np.where(rows["is_anchor"], 1.5, 1.0))
        assert rows["token"].str.len().sum() > 0
        assert summary["responses_text"][problem]
    assert {"head_groups", "entropy", "coupling", "perturbation"} <= set(summary)
    assert summary["entropy"]["preplan_producing"]["tokens"] == len(tokens)
    assert {row["lag"] for row in summary["coupling"]} == {0, 1, 3}
    assert all(0 <= row["shuffled_mean"] <= 1 for row in summary["coupling"])
    assert summary["perturbation"]["pairs"] >= 1
    heads = pd.read_parquet(out / "heads.parquet")
    assert len(heads) == 2 * 4 and heads["score"].is_monotonic_decreasing
    assert (out / "rhythm.html").exists() and "| peak fraction | lag |" in (out / "summary.md").read_text()
    assert any((root / "results" / "runs").iterdir())


def test_figure_marks_anchors_and_preplan(cli_run):
    _, out, _ = cli_run
    tokens = pd.read_parquet(out / "tokens.parquet")
    problem = tokens["problem"].iloc[0]
    figure = rhythm_figure(tokens, problem)
    rows = tokens[tokens["problem"] == problem]
    bars, line, markers = figure.data[0], figure.data[1], figure.data[2]
    assert list(bars.y) == pytest.approx(list(rows["fai"]), nan_ok=True)
    assert list(line.y) == pytest.approx(list(rows["waad"]))
    assert sorted(markers.x) == rows.loc[rows["is_preplan"], "position"].tolist()
    assert list(bars.marker.color).count("#d62728") == int(rows["is_anchor"].sum())
    with pytest.raises(ValueError, match="not in the token table"):
        rhythm_figure(tokens, "no-such-problem")


@pytest.mark.parametrize(
    "content,words",
    [("not json\n", "not valid JSON"), ('{"answer": "#### 3"}\n', "no 'question'"), ("", "no problems")],
)
def test_cli_bad_problems_file(tmp_path, monkeypatch, content, words):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["rhythm", "tiny-gqa", "--problems", str(path), "--out", str(out)])
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "results").exists()


def test_cli_missing_file_and_bad_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["rhythm", "tiny-gqa", "--problems", str(tmp_path / "none.jsonl"), "--out", str(out)]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    result = CliRunner().invoke(
        app, ["rhythm", "tiny-gqa", "--layers", "7", "--out", str(out), "--limit", "1"]
    )
    assert result.exit_code == 2 and "layer 7" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_smollm2_rhythm_matches_exact_rows_on_a_worked_answer(smollm2):
    """On the real model: seam-derived WAAD/FAI/d equal the spec formulas on exact attention rows.

    The response is a bundled problem's worked answer (teacher-forced), so no generation is needed.
    """
    problem = load_problems()[2]
    prompt = smollm2.encode(problem.prompt(), chat=True)[0]
    response = smollm2.tokenizer(problem.answer, add_special_tokens=False, return_tensors="pt")["input_ids"][
        0
    ]
    layers = (10, 15, 20)
    result = analyse_response(smollm2, problem, prompt, response, layers=layers, params=RhythmParams())
    ids = torch.cat([prompt, response])[None]
    total = ids.shape[-1]
    _, cap = smollm2.run(
        ids, CaptureSpec(layers=layers, statistics=(), rows=tuple(range(prompt.numel(), total)))
    )
    # rows of prompt queries are not needed: every statistic here reads response rows only
    rows = torch.zeros(len(layers), smollm2.shape.num_heads, total, total, dtype=torch.float64)
    for i in range(prompt.numel(), total):
        rows[:, :, i] = cap.rows[i][0].double()
    reference = reference_rhythm(rows.numpy(), result.local, result.global_, prompt.numel())
    np.testing.assert_allclose(result.distance, reference["distance"], rtol=1e-4)
    np.testing.assert_allclose(result.waad, reference["waad"], rtol=1e-4, atol=1e-5)
    finite = np.isfinite(reference["fai"])
    np.testing.assert_allclose(result.fai[finite], reference["fai"][finite], rtol=1e-3, atol=1e-6)
    # head groups really differ in reach; WAAD stays within [0, W]
    assert result.distance[result.global_].min() > 2 * result.distance[result.local].max()
    assert 0 <= result.waad.min() and result.waad.max() <= 10


def test_batched_analysis_equals_one_at_a_time(tiny):
    """Many responses per forward (right-padded) give the statistics of one forward per response."""
    from workbench.analyses.rhythm.pipeline import analyse_batch

    texts = [QUESTION, "Ben has 4 apples. He gets 3 more.", "x"]
    problems = [Problem(f"p{i}", t, "#### 7") for i, t in enumerate(texts)]
    prompts = [tiny.encode(t)[0] for t in texts]
    responses = generate_batch(tiny, prompts, 30, batch_size=3)
    params = RhythmParams(fai_window=(3, 9))
    batched = analyse_batch(tiny, problems, prompts, responses, layers=(0, 1), params=params, batch_size=3)
    assert (
        len({int(p.numel() + r.numel()) for p, r in zip(prompts, responses, strict=True)}) > 1
    )  # padding used
    for problem, prompt, response, got in zip(problems, prompts, responses, batched, strict=True):
        single = analyse_response(tiny, problem, prompt, response, layers=(0, 1), params=params)
        for name in ("waad", "fai", "delta", "entropy", "entropy_next", "distance"):
            np.testing.assert_allclose(
                getattr(got, name), getattr(single, name), rtol=1e-5, atol=1e-6, err_msg=name
            )
        assert np.array_equal(got.local, single.local) and np.array_equal(got.global_, single.global_)
        assert np.array_equal(got.top_ids, single.top_ids) and got.text == single.text
        for name in ("is_preplan", "is_anchor", "credit_coupled"):
            assert np.array_equal(got.credit[name], single.credit[name]), name


def test_generated_problems_are_seeded_and_solvable():
    from workbench.analyses.rhythm.generator import LEVELS, choose_level, generate_problems, wilson_lower

    first = generate_problems(LEVELS[7], 20, seed=3)
    assert first == generate_problems(LEVELS[7], 20, seed=3) != generate_problems(LEVELS[7], 20, seed=4)
    assert any("boxes" in p.question for p in first)
    for problem in first:
        assert problem.answer.startswith("#### ") and int(problem.answer[5:]) >= 0
        assert problem.question.count("Then") == LEVELS[7][0]
    for problem in generate_problems(LEVELS[0], 20, seed=3):  # add only, operands <= 5
        assert "gives" not in problem.question and "boxes" not in problem.question
        numbers = [int(w) for w in problem.question.replace(".", " ").split() if w.isdigit()]
        assert max(numbers) <= 5 and sum(numbers) == int(problem.answer[5:])
    assert is_correct("so she has 9.\n#### 9", "#### 9")
    assert abs(wilson_lower(30, 100) - 0.2189) < 1e-3 and wilson_lower(0, 0) == 0.0
    chosen = choose_level({0: (40, 48), 1: (30, 48), 2: (20, 48), 3: (5, 48)})
    assert chosen["level"] == 1 and chosen["meets_target"]  # 20/48 has a Wilson lower bound of 0.288
    fallback = choose_level({0: (10, 48), 1: (12, 48), 2: (3, 48)})
    assert fallback["level"] == 1 and not fallback["meets_target"]


def test_worked_examples_are_correct_and_precede_the_question():
    import re

    from workbench.analyses.rhythm.generator import LEVELS, chat_messages, generate_problems, worked_examples

    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b}
    for level in LEVELS:
        examples = worked_examples(level)
        assert len(examples) == 2 and examples == worked_examples(level)
        for _question, solution in examples:
            for a, op, b, c in re.findall(r"(\d+) ([-+x]) (\d+) = (\d+)", solution):
                assert ops[op](int(a), int(b)) == int(c), solution
            assert solution.count(" = ") >= level[0]
            assert is_correct(solution, "#### " + solution.rsplit("#### ", 1)[1])
        problem = generate_problems(level, 1, seed=0)[0]
        turns = chat_messages(problem, level)
        assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
        assert turns[-1]["content"].startswith(problem.question)
        assert problem.question not in {q for q, _ in examples}
    assert chat_messages(problem, LEVELS[0], "instruction") == [{"role": "user", "content": problem.prompt()}]
