"""The retrieval score's rules, pinned on hand-built cases (Wu et al. 2024, algorithms.md §1).

1. Pure rules: top-1 key inside [s, e) AND prompt[key] == generated token; each hit adds 1/(e - s).
2. Row alignment: the row that produced generated token t is query position len(prompt) - 1 + t.
3. A fake model whose attention and outputs we control (tiny-gqa with a scripted lm_head and a
   probability edit pinning chosen heads to chosen keys), run through the real harness and seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.analyses.retrieval.haystack import Needle, PromptBuilder, read_haystack
from workbench.analyses.retrieval.niah import generate_with_decode_capture, run_prompts
from workbench.analyses.retrieval.scoring import decode_argmax, retrieval_hits, score_table
from workbench.seam.interventions import ProbabilityEdit, register_intervention


def test_hit_rules_on_hand_built_rows():
    prompt = torch.tensor([5, 9, 7, 7, 3, 9, 4])  # answer span [2, 5): tokens 7 7 3
    new = torch.tensor([7, 3, 9, 7])
    argmax = torch.tensor(
        [
            [
                [2, 4, 1, 3],  # hits at t=0 (7), t=1 (3), t=3 (7): 1 (index 1 is outside) -> 3 hits
                [5, 5, 5, 5],  # token 9 at key 5 matches t=2 but key 5 == e is outside -> 0
                [2, 2, 2, 2],  # inside, token 7 matches t=0 and t=3 -> 2 hits
                [4, 4, 3, 4],  # inside; only t=1 copies (token 3 at key 4) -> 1 hit
            ]
        ]
    )  # (layer=1, head=4, step=4)
    score = retrieval_hits(argmax, prompt, new, (2, 5))
    np.testing.assert_allclose(score.numpy(), [[3 / 3, 0.0, 2 / 3, 1 / 3]])


@dataclass
class _Capture:
    positions: np.ndarray
    row: dict


def test_decode_argmax_takes_the_rows_that_produced_each_token():
    prompt_length, new = 6, 3
    positions = np.arange(prompt_length + new - 1)  # model.generate: prefill rows + one row per fed token
    argmax = torch.arange(len(positions)).reshape(1, 1, 1, -1) * 10  # value = 10 x position
    rows = decode_argmax(_Capture(positions, {"argmax": argmax}), prompt_length, new)
    assert rows.tolist() == [[[50, 60, 70]]]  # positions 5, 6, 7 = len(prompt) - 1 + t
    only_decode = np.arange(prompt_length - 1, prompt_length - 1 + new)  # the paper's prefill of prompt[:-1]
    rows = decode_argmax(_Capture(only_decode, {"argmax": argmax[..., : len(only_decode)] + 50}), prompt_length, new)
    assert rows.tolist() == [[[50, 60, 70]]]


def test_score_table_means_over_successful_runs_only():
    class Shape:
        num_layers, num_heads = 1, 2

        @staticmethod
        def kv_head(head):
            return head

    table = score_table([np.array([[0.5, 0.0]]), np.array([[0.1, 0.2]])], Shape())
    assert table[["layer", "head"]].values.tolist() == [[0, 0], [0, 1]]
    np.testing.assert_allclose(table.score, [0.3, 0.1])
    assert table.retrieval_head.tolist() == [True, False]  # > 0.1 strictly
    assert table.attrs["params"]["successful_runs"] == 2


# --- a fake model whose attention and outputs we control -----------------------------------------


class ScriptedHead(torch.nn.Module):
    """lm_head replacement: after each prefill, emits the next run's script one token per decode step."""

    def __init__(self, vocab: int, scripts: list[list[int]]):
        super().__init__()
        self.vocab, self.scripts, self.run, self.step = vocab, scripts, -1, 0

    def forward(self, hidden):
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        if hidden.shape[1] > 1:  # a prefill (prompt[:-1]) starts the next run
            self.run, self.step = self.run + 1, 0
            return logits
        logits[..., self.scripts[self.run][self.step]] = 10.0
        self.step += 1
        return logits


@register_intervention
@dataclass(frozen=True)
class PinKeys(ProbabilityEdit):
    """Test-only: the row at query position q attends only to key pins[q] (one-hot)."""

    pins: tuple[tuple[int, int], ...] = ()
    kind: ClassVar[str] = "test_pin_keys"

    def edit(self, p, query_positions):
        pins = dict(self.pins)
        out = p.clone()
        for local, position in enumerate(query_positions.tolist()):
            if position in pins:
                out[:, local] = 0
                out[:, local, pins[position]] = 1
        return out


def _expected(prompt, new, keys, span):
    start, end = span
    return sum(1 for t, k in enumerate(keys) if start <= k < end and prompt[k] == new[t]) / (end - start)


@pytest.fixture()
def scripted():
    model = wb.load_model("tiny-gqa")  # a fresh copy: its lm_head is replaced
    return model


def test_fake_model_scores_through_the_harness(scripted):
    model = scripted
    tok = model.tokenizer
    builder = PromptBuilder(model, read_haystack("synthetic"), chat=False)
    good = builder.build(Needle("The code is blue 42.", "What is the code?", "blue 42"), 160, 50)
    bad = builder.build(Needle("The code is red 17.", "What is the code?", "red 17"), 160, 50)
    answer_ids = tok("blue 42\n", add_special_tokens=False)["input_ids"]
    wrong_ids = tok("zzz\n", add_special_tokens=False)["input_ids"]
    model.hf.lm_head = ScriptedHead(model.hf.config.vocab_size, [answer_ids, wrong_ids])

    prompt = good.ids.tolist()
    start, end = good.answer_span
    assert tok.decode(prompt[start:end]) == " blue 42"  # the exact answer tokens (with the leading space)
    last = len(prompt) - 1  # the row that produced generated token t is last + t
    n = len(answer_ids)
    keys = {
        (1, 0): [start + 1 + t for t in range(n)],  # the matching copy position: hits for t < 7, then e
        (1, 1): [start + t for t in range(n)],  # off by one: inside, wrong token
        (1, 2): [end - 1] * n,  # always the '2': one hit (t = 6)
        (0, 1): [start - 3] * n,  # the space in "code is": the generated space (t = 4) copies it, but outside
    }
    pins = [PinKeys(layer, head, pins=tuple((last + t, k) for t, k in enumerate(ks))) for (layer, head), ks in keys.items()]
    first = run_prompts(model, [good], interventions=pins, detect=True, progress=False)
    second = run_prompts(model, [bad], interventions=pins, detect=True, progress=False)
    assert first.runs.response.tolist() == ["blue 42"] and bool(first.runs.success[0])
    assert not bool(second.runs.success[0])  # "zzz" shares nothing with "red 17": excluded from the mean

    new = answer_ids
    space = tok(" ", add_special_tokens=False)["input_ids"][0]
    assert prompt[start - 3] == space and new[4] == space
    expected = {head: _expected(prompt, new, ks, (start, end)) for head, ks in keys.items()}
    assert expected[(1, 0)] == pytest.approx(7 / 8) and expected[(1, 2)] == pytest.approx(1 / 8)
    assert expected[(1, 1)] == 0 and expected[(0, 1)] == 0
    table = score_table([s for s, ok in zip(first.scores + second.scores, [True, False], strict=True) if ok], model.shape)
    scores = {(int(r.layer), int(r.head)): r.score for r in table.itertuples()}
    for head, value in expected.items():
        assert scores[head] == pytest.approx(value), head
    assert table.iloc[0][["layer", "head"]].tolist() == [1, 0]  # sorted by score


def test_decode_capture_matches_generate_rows(tiny):
    """The paper's prefill(prompt[:-1]) + decode loop gives the same tokens and top-1 keys as the
    foundation's generate() with a full capture, at the rows len(prompt) - 1 + t."""
    ids = tiny.encode("Needle: the answer is 42. Question: what is the answer? Answer:")
    gen = generate_with_decode_capture(tiny, ids, max_new_tokens=6)
    reference = tiny.generate(ids, max_new_tokens=6, stop_at_newline=True, spec=wb.CaptureSpec(statistics=("argmax",)))
    assert torch.equal(gen.new_ids, reference.new_ids)
    assert list(gen.capture.positions) == list(range(ids.shape[-1] - 1, ids.shape[-1] - 1 + len(gen.new_ids)))
    n = len(gen.new_ids)
    assert torch.equal(decode_argmax(gen.capture, ids.shape[-1], n), decode_argmax(reference.capture, ids.shape[-1], n))


_SEEN: list[int] = []


@dataclass(frozen=True)
class RecordQueries(ProbabilityEdit):
    """Test-only: record the query positions this head's (scoped) edit is applied to; change nothing."""

    kind: ClassVar[str] = "test_record_queries"

    def edit(self, p, query_positions):
        _SEEN.extend(int(q) for q in query_positions.tolist())
        return p


def test_decode_scope_mask_covers_the_first_answer_token(tiny):
    """Evaluation runs use the repo's loop too: a decode-scope mask acts on the step fed the last prompt
    token (the one that produces the first answer token), and on no prefill row."""
    builder = PromptBuilder(tiny, read_haystack("synthetic"), chat=False)
    prompt = builder.build(Needle("The code is blue 42.", "What is the code?", "blue 42"), 120, 50)
    _SEEN.clear()
    result = run_prompts(tiny, [prompt], interventions=[RecordQueries(1, 0, scope="decode")], max_new_tokens=4,
                         progress=False)
    last = len(prompt.ids) - 1
    assert _SEEN == list(range(last, last + int(result.runs.new_tokens[0])))
    assert result.scores == [None]  # no capture without detect
