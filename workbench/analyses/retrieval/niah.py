"""The needle-in-a-haystack harness: a grid of lengths x depths x needles, greedy answers, ROUGE-1
success, and (when detecting) the per-head retrieval score from the same generation's capture."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.analyses.batching import GENERATE_BATCH
from workbench.analyses.retrieval.grid import DEFAULT_DEPTHS, DEFAULT_LENGTHS  # noqa: F401  (re-exported)
from workbench.analyses.retrieval.haystack import (
    Haystack,
    Needle,
    NiahPrompt,
    PromptBuilder,
    passkey_needles,
    read_haystack,
    read_needles,
)
from workbench.analyses.retrieval.rouge import rouge1_recall
from workbench.analyses.retrieval.scoring import decode_argmax, retrieval_hits, score_table
from workbench.capture import Capture
from workbench.runners.hf import Generation, InputError, cache_of, with_cache
from workbench.seam.spec import CaptureSpec

SUCCESS_RECALL = 0.5
BATCH_SIZE = GENERATE_BATCH  # evaluation runs of one token length generated together; detection goes one at a time
ARGMAX_SPEC = CaptureSpec(statistics=("argmax",))


@dataclass
class NiahResult:
    """Per-run table plus, when detecting, each run's (layer, head) retrieval score."""

    runs: pd.DataFrame
    scores: list[np.ndarray | None] = field(default_factory=list)

    def summary(self) -> dict:
        return niah_summary(self.runs)


def niah_summary(runs: pd.DataFrame) -> dict:
    if runs.empty:
        return {"success_rate": float("nan"), "mean_rouge_recall": float("nan"), "num_runs": 0}
    return {
        "success_rate": float(runs["success"].mean()),
        "mean_rouge_recall": float(runs["rouge_recall"].mean()),
        "num_runs": int(len(runs)),
    }


def resolve_inputs(haystack, needles, split: str = "detect") -> tuple[Haystack, list[Needle]]:
    """Haystack (path, Haystack or None = synthetic) and needles (path, list or None = built-in).

    With the synthetic haystack and no needles, random pass keys are the needles (the passkey task).
    """
    if not isinstance(haystack, Haystack):
        haystack = read_haystack(haystack)
    if needles is None or isinstance(needles, (str, Path)):
        if needles is None and haystack.source == "synthetic":
            needles = passkey_needles(3, seed=0 if split == "detect" else 1)
        else:
            needles = read_needles(needles, split)
    return haystack, list(needles)


def generate_with_decode_capture(model, ids: torch.Tensor, *, max_new_tokens: int = 50, interventions=(),
                                 spec: CaptureSpec | None = ARGMAX_SPEC) -> Generation:
    """Greedy answer as in the paper: prefill prompt[:-1] with no capture, then decode from the last
    prompt token with the seam capturing ``spec``. The captured query positions are
    len(prompt) - 1 + t for t = 0..new-1: exactly the rows that produced the generated tokens.
    Interventions follow their scope (the last prompt token's step counts as decode, as in the repo, so
    a decode-scope mask acts on every step that produces an answer token, the first included).
    With ``spec=None`` nothing is captured (``capture`` is None): the evaluation path of masked runs.
    """
    ids = torch.as_tensor(ids).reshape(1, -1).to(model.device)
    if ids.shape[-1] < 2:
        raise InputError("a NIAH prompt needs at least two tokens")
    model.check_length(ids.shape[-1] + max_new_tokens)
    eos = model.tokenizer.eos_token_id
    new: list[int] = []
    with torch.no_grad():
        with model.seam(None, interventions):
            past = cache_of(model.hf(input_ids=ids[:, :-1], use_cache=True))
        with model.seam(spec, interventions) as session:
            step = ids[:, -1:]
            while True:
                out = model.hf(input_ids=step, use_cache=True, **with_cache(model.hf, past))
                past = cache_of(out)
                token = int(out.logits[0, -1].argmax())
                new.append(token)
                if token == eos or len(new) == max_new_tokens or "\n" in model.tokenizer.decode([token]):
                    break
                step = torch.tensor([[token]], device=model.device)
            session.check_fired()
    capture = None
    if spec is not None and spec.captures_anything:
        capture = Capture.from_records(model.shape, session.records, meta={"spec": spec.to_dict(), "model": model.name})
    text = model.tokenizer.decode(new, skip_special_tokens=True)
    return Generation(ids[0].cpu(), torch.tensor(new, dtype=torch.long), text, capture)


def greedy_answers(model, ids: torch.Tensor, *, max_new_tokens: int = 50, interventions=()) -> list[list[int]]:
    """``generate_with_decode_capture`` with nothing captured, for a batch of prompts of one length.

    ``ids``: (batch, prompt) token ids, every row the same length (so no padding and no attention mask: each
    row's numbers are those of running it alone, up to the order of floating-point sums). Prefill
    prompt[:-1], then decode from the last prompt token, greedily; a row stops at end of text, a newline or
    ``max_new_tokens`` (the batch runs until every row stopped; a stopped row's later tokens are dropped).
    The new tokens stay on the model's device between steps; one copy per step reads them.
    """
    ids = torch.as_tensor(ids)
    if ids.dim() != 2 or ids.shape[-1] < 2:
        raise InputError(f"greedy_answers needs (batch, prompt >= 2) ids, got shape {tuple(ids.shape)}")
    ids = ids.to(model.device)
    model.check_length(ids.shape[-1] + max_new_tokens)
    eos = model.tokenizer.eos_token_id
    new: list[list[int]] = [[] for _ in range(ids.shape[0])]
    running = set(range(ids.shape[0]))
    with torch.no_grad():
        with model.seam(None, interventions):
            past = cache_of(model.hf(input_ids=ids[:, :-1], use_cache=True))
        with model.seam(None, interventions):
            step = ids[:, -1:]
            while running:
                out = model.hf(input_ids=step, use_cache=True, **with_cache(model.hf, past))
                past = cache_of(out)
                tokens = out.logits[:, -1].argmax(-1)
                for row, token in enumerate(tokens.tolist()):
                    if row not in running:
                        continue
                    new[row].append(token)
                    if token == eos or len(new[row]) == max_new_tokens or "\n" in model.tokenizer.decode([token]):
                        running.discard(row)
                step = tokens[:, None]
    return new


def grid_prompts(builder: PromptBuilder, needles: Sequence[Needle], lengths, depths) -> list[NiahPrompt]:
    return [builder.build(n, int(length), float(depth)) for n in needles for length in lengths for depth in depths]


def run_prompts(
    model,
    prompts: Sequence[NiahPrompt],
    *,
    interventions=(),
    detect: bool = False,
    max_new_tokens: int = 50,
    progress: bool = True,
    description: str = "niah",
    units=None,
    batch_size: int = BATCH_SIZE,
) -> NiahResult:
    """Generate an answer for each prompt; score success, and the heads when ``detect``.

    Without detection, prompts of the same token length run ``batch_size`` at a time (``greedy_answers``);
    detection captures one run at a time. ``units`` (a ``workbench.checkpoint.UnitLog`` for this exact job)
    keeps each finished run, so a rerun after an interruption reads those back and generates only the rest."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    rows: list = [None] * len(prompts)
    scores: list = [None] * len(prompts)
    keys = [_unit_key(description, index, prompt, detect) for index, prompt in enumerate(prompts)]
    todo = []
    for index in range(len(prompts)):
        done = units.get(keys[index]) if units is not None else None
        if done is None:
            todo.append(index)
            continue
        rows[index] = done["row"]
        scores[index] = None if done["score"] is None else np.asarray(done["score"], dtype=done["dtype"])

    def finish(index: int, new_ids: list[int], seconds: float, run_score=None) -> None:
        prompt = prompts[index]
        response = model.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        recall = rouge1_recall(prompt.needle.answer, response)
        scores[index] = run_score
        rows[index] = {
            "needle": prompt.needle.needle,
            "answer": prompt.needle.answer,
            "length": prompt.length,
            "depth": prompt.depth,
            "tokens": int(torch.as_tensor(prompt.ids).numel()),
            "answer_start": prompt.answer_span[0],
            "answer_end": prompt.answer_span[1],
            "response": response,
            "rouge_recall": recall,
            "success": recall > SUCCESS_RECALL,
            "new_tokens": len(new_ids),
            "seconds": seconds,
        }
        if units is not None:
            units.add(keys[index], {
                "row": {k: (v.item() if hasattr(v, "item") else v) for k, v in rows[index].items()},
                "score": None if run_score is None else run_score.tolist(),
                "dtype": None if run_score is None else str(run_score.dtype),
            })

    bar = tqdm(total=len(todo), desc=description, unit="run", disable=not progress, leave=False)
    if detect:
        for index in todo:
            started = time.perf_counter()
            # the paper-style loop: under generate() the first answer token would come from the prefill,
            # which a decode-scope mask (the repo's) leaves untouched
            gen = generate_with_decode_capture(model, prompts[index].ids, max_new_tokens=max_new_tokens,
                                               interventions=interventions, spec=ARGMAX_SPEC)
            argmax = decode_argmax(gen.capture, len(gen.prompt_ids), len(gen.new_ids))
            run_score = retrieval_hits(argmax, gen.prompt_ids, gen.new_ids, prompts[index].answer_span).numpy()
            finish(index, gen.new_ids.tolist(), time.perf_counter() - started, run_score)
            bar.update(1)
    else:
        by_length: dict[int, list[int]] = {}
        for index in todo:
            by_length.setdefault(int(torch.as_tensor(prompts[index].ids).numel()), []).append(index)
        for length in sorted(by_length):
            group = by_length[length]
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                started = time.perf_counter()
                ids = torch.stack([torch.as_tensor(prompts[i].ids).reshape(-1) for i in chunk])
                answers = greedy_answers(model, ids, max_new_tokens=max_new_tokens, interventions=interventions)
                seconds = (time.perf_counter() - started) / len(chunk)  # the batch's time, shared
                for index, new_ids in zip(chunk, answers, strict=True):
                    finish(index, new_ids, seconds)
                bar.update(len(chunk))
    bar.close()
    return NiahResult(pd.DataFrame(rows), scores)


def _unit_key(description: str, index: int, prompt: NiahPrompt, detect: bool) -> str:
    """One NIAH run: its place in the job and a digest of its exact prompt tokens."""
    import hashlib

    ids = torch.as_tensor(prompt.ids).reshape(-1).to(torch.int64).cpu().numpy().tobytes()
    return f"{description}/{index}/{int(detect)}/{hashlib.sha256(ids).hexdigest()[:12]}"


def run_conditions(model, prompts: Sequence[NiahPrompt], conditions, *, max_new_tokens: int = 50,
                   progress: bool = True, on_condition=None,
                   batch_size: int = BATCH_SIZE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same prompts under each condition ``(label, interventions, fields)``; the first condition is
    the baseline. ``batch_size`` decodes prompts of equal length that many at a time
    (``run_prompts``). Returns one row per condition (``fields``, the NIAH summary, ``drop`` = baseline
    success - success) and the per-run table (``fields`` on every run). ``on_condition(rows, runs)``
    sees the partial lists after each condition (a long job can save as it goes)."""
    rows, runs = [], []
    for label, interventions, fields in conditions:
        result = run_prompts(model, prompts, interventions=interventions, max_new_tokens=max_new_tokens,
                             progress=progress, description=label, batch_size=batch_size)
        runs.append(result.runs.assign(**fields))
        rows.append({**fields, **niah_summary(result.runs)})
        rows[-1]["drop"] = rows[0]["success_rate"] - rows[-1]["success_rate"]
        if on_condition is not None:
            on_condition(rows, runs)
    return pd.DataFrame(rows), pd.concat(runs, ignore_index=True)


def run_niah(
    model,
    haystack=None,
    needles=None,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    *,
    interventions=(),
    detect: bool = False,
    chat: bool | None = None,
    max_new_tokens: int = 50,
    split: str = "detect",
    progress: bool = True,
    units=None,
) -> NiahResult:
    haystack, needles = resolve_inputs(haystack, needles, split)
    builder = PromptBuilder(model, haystack, chat=chat)
    prompts = grid_prompts(builder, needles, lengths, depths)
    return run_prompts(model, prompts, interventions=interventions, detect=detect, max_new_tokens=max_new_tokens,
                       progress=progress, units=units)


def detect_retrieval_heads(
    model,
    haystack=None,
    needles=None,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    *,
    threshold: float = 0.1,
    chat: bool | None = None,
    max_new_tokens: int = 50,
    progress: bool = True,
    return_runs: bool = False,
    units=None,
):
    """Retrieval score per head (Wu et al. 2024 §1): mean over successful runs of the per-run hit rate.

    Returns the head table (``layer, head, kv_head, score, active_runs, retrieval_head``), sorted by score,
    with the grid in ``attrs["params"]``; with ``return_runs`` also the per-run table. ``units``: see
    ``run_prompts`` (resuming an interrupted detection).
    """
    haystack, needles = resolve_inputs(haystack, needles, "detect")
    result = run_niah(model, haystack, needles, lengths, depths, detect=True, chat=chat,
                      max_new_tokens=max_new_tokens, progress=progress, units=units)
    good = [s for s, ok in zip(result.scores, result.runs["success"], strict=True) if ok]
    params = {
        "haystack": haystack.source,
        "needles": [n.to_dict() for n in needles],
        "lengths": [int(x) for x in lengths],
        "depths": [float(x) for x in depths],
        "chat": builder_chat(model, chat),
        "max_new_tokens": max_new_tokens,
        "success_recall": SUCCESS_RECALL,
        "total_runs": int(len(result.runs)),
    }
    table = score_table(good, model.shape, threshold=threshold, params=params)
    return (table, result.runs) if return_runs else table


def builder_chat(model, chat: bool | None) -> bool:
    return model.has_chat_template if chat is None else bool(chat)


def evaluate_niah(
    model,
    haystack=None,
    needles=None,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    *,
    interventions=(),
    chat: bool | None = None,
    max_new_tokens: int = 50,
    split: str = "detect",
    progress: bool = True,
) -> pd.DataFrame:
    """NIAH runs (optionally under interventions): one row per run; ``niah_summary`` aggregates."""
    return run_niah(model, haystack, needles, lengths, depths, interventions=interventions, chat=chat,
                    max_new_tokens=max_new_tokens, split=split, progress=progress).runs
