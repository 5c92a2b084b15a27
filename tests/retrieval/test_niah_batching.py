"""NIAH evaluation runs of one token length are generated as a batch: the same answers as one at a time."""

from __future__ import annotations

import torch

import workbench as wb
from workbench.analyses.retrieval.haystack import Needle, PromptBuilder, read_haystack
from workbench.analyses.retrieval.niah import (
    generate_with_decode_capture,
    greedy_answers,
    grid_prompts,
    run_prompts,
)

NEEDLES = [
    Needle("The code is blue 42.", "What is the code?", "blue 42"),
    Needle("The boat is called Marigold.", "What is the boat called?", "Marigold"),
]


def _prompts(model):
    builder = PromptBuilder(model, read_haystack("synthetic"), chat=False)
    return grid_prompts(builder, NEEDLES, (160, 200), (10, 50, 90))


def test_batched_answers_equal_one_at_a_time(tiny):
    prompts = _prompts(tiny)
    lengths = [len(p.ids) for p in prompts]
    assert len(set(lengths)) < len(lengths)  # some cells share a length, so some batches hold several runs
    mask = wb.mask_heads([(1, 0), (0, 2)], mode="uniform", scope="decode")
    for interventions in ([], mask):
        single = [
            generate_with_decode_capture(
                tiny, p.ids, max_new_tokens=7, interventions=interventions, spec=None
            )
            for p in prompts
        ]
        same = [i for i, p in enumerate(prompts) if len(p.ids) == lengths[0]]
        batched = greedy_answers(
            tiny, torch.stack([prompts[i].ids for i in same]), max_new_tokens=7, interventions=interventions
        )
        assert batched == [single[i].new_ids.tolist() for i in same]
        one = run_prompts(
            tiny, prompts, interventions=interventions, max_new_tokens=7, progress=False, batch_size=1
        )
        many = run_prompts(
            tiny, prompts, interventions=interventions, max_new_tokens=7, progress=False, batch_size=8
        )
        columns = ["needle", "length", "depth", "tokens", "response", "rouge_recall", "success", "new_tokens"]
        assert one.runs[columns].equals(many.runs[columns])
        assert one.runs["response"].tolist() == [
            tiny.tokenizer.decode(g.new_ids, skip_special_tokens=True).strip() for g in single
        ]
    # the mask changes the answers (so the comparison above is not vacuous)
    plain = run_prompts(tiny, prompts, max_new_tokens=7, progress=False)
    masked = run_prompts(tiny, prompts, interventions=mask, max_new_tokens=7, progress=False)
    assert plain.runs["response"].tolist() != masked.runs["response"].tolist()


def test_rows_stop_on_their_own(tiny):
    """A row that ends early keeps its own tokens; the others run on to max_new_tokens."""
    prompts = _prompts(tiny)
    first = prompts[0]
    ids = torch.stack([first.ids, first.ids])
    answers = greedy_answers(tiny, ids, max_new_tokens=5)
    assert answers[0] == answers[1] and 1 <= len(answers[0]) <= 5
    try:
        greedy_answers(tiny, first.ids, max_new_tokens=5)
    except wb.InputError as error:
        assert "(batch, prompt" in str(error)
    else:
        raise AssertionError("a 1-d prompt should be refused")
