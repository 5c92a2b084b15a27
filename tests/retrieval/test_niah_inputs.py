"""NIAH inputs: ROUGE-1 recall, haystacks, needles, sentence-boundary insertion, the answer span."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.analyses.retrieval.haystack import (
    Needle,
    PromptBuilder,
    builtin_needles,
    locate_answer,
    parse_needles,
    passkey_needles,
    read_haystack,
)
from workbench.analyses.retrieval.rouge import rouge1_recall, tokens
from workbench.runners.hf import InputError

ESSAYS = Path(__file__).resolve().parents[3] / "shared" / "data" / "niah" / "essays"


def test_rouge1_recall_with_stemming():
    assert rouge1_recall("eat a sandwich and sit in Dolores Park", "They eat sandwiches in dolores parks.") == pytest.approx(5 / 8)
    assert rouge1_recall("4 7 2 9 1", "The code is 4 7 2 9 1.") == 1.0
    assert rouge1_recall("4 7 2 9 1", "4 7 2") == pytest.approx(3 / 5)
    assert rouge1_recall("the the cat", "the cat") == pytest.approx(2 / 3)  # clipped counts
    assert rouge1_recall("walking", "walked") == 1.0 and tokens("Cities, glass!") == ["city", "glass"]
    assert rouge1_recall("", "anything") == 0.0


def test_needles_parse_and_reject():
    needles = parse_needles('{"needle": "N is 5.", "question": "What is N?", "answer": "5"}\n\n')
    assert needles == [Needle("N is 5.", "What is N?", "5")]
    with pytest.raises(InputError, match="line 1"):
        parse_needles('{"needle": "x"}')
    with pytest.raises(InputError, match="not JSON"):
        parse_needles("not json")
    detect, heldout = builtin_needles("detect"), builtin_needles("heldout")
    assert len(detect) == 3 and len(heldout) >= 8
    assert not {n.needle for n in detect} & {n.needle for n in heldout}
    keys = passkey_needles(3, seed=0)
    assert keys == passkey_needles(3, seed=0) and keys != passkey_needles(3, seed=1)
    assert all(k.answer in k.needle and len(k.answer) == 5 for k in keys)


def test_haystack_sources(tmp_path):
    synthetic = read_haystack(None)
    assert synthetic.source == "synthetic" and "The grass is green." in synthetic.text
    folder = read_haystack(ESSAYS)
    assert len(folder.text) > 100_000
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_haystack(tmp_path / "missing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        read_haystack(tmp_path / "empty")


@pytest.mark.parametrize("depth", [0, 37, 100])
def test_needle_lands_on_a_sentence_boundary(tiny, depth):
    builder = PromptBuilder(tiny, read_haystack(ESSAYS), chat=False)
    needle = Needle("The secret code is 4 7 2 9 1.", "What is the secret code?", "4 7 2 9 1")
    prompt = builder.build(needle, 900, depth)
    ids = prompt.ids.tolist()
    text = tiny.tokenizer.decode(ids)
    assert len(ids) == 900  # byte tokenizer: exact
    start, end = prompt.needle_span
    assert tiny.tokenizer.decode(ids[start:end]) == " " + needle.needle
    before = tiny.tokenizer.decode(ids[:start]).rstrip()
    assert depth == 100 or start == 0 or before.endswith(".")  # depth 100: after the haystack, as the paper
    s, e = prompt.answer_span
    assert tiny.tokenizer.decode(ids[s:e]) == " 4 7 2 9 1" and start <= s and e <= end
    assert text.endswith("Question: What is the secret code?\nAnswer:")
    if depth == 100:
        assert end == len(ids) - len(builder._frame(needle.question)[1])
    if depth == 0:
        assert start == 0


@pytest.mark.slow
def test_chat_template_frames_the_book(smollm2):
    model = smollm2
    builder = PromptBuilder(model, read_haystack(None))
    prompt = builder.build(builtin_needles("detect")[0], 300, 50)
    text = model.tokenizer.decode(prompt.ids)
    assert "<|im_start|>user\n<book>" in text and text.endswith("Answer:<|im_end|>\n<|im_start|>assistant\n")
    s, e = prompt.answer_span
    assert model.tokenizer.decode(prompt.ids[s:e]).strip() == "4 7 2 9 1"
    assert abs(len(prompt.ids) - 300) <= 2


def test_answer_span_rules():
    ids = [1, 2, 3, 9, 4, 5, 6, 7]
    assert locate_answer(ids, [[4, 5, 6]], (3, 8)) == (4, 7)  # exact tokens
    assert locate_answer(ids, [[6, 5, 4]], (3, 8)) == (4, 7)  # the paper's >90% unique-overlap rule
    with pytest.raises(InputError, match="not found inside the needle"):
        locate_answer(ids, [[1, 2]], (3, 8))  # only before the needle: never taken


def test_bad_grid_values(tiny):
    builder = PromptBuilder(tiny, read_haystack(None), chat=False)
    needle = builtin_needles("detect")[0]
    with pytest.raises(InputError, match="depth"):
        builder.build(needle, 400, 120)
    with pytest.raises(InputError, match="at least"):
        builder.build(needle, 40, 50)
