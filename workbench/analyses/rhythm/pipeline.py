"""The rhythm job: generate a response per problem, run one extra forward through the seam on
prompt + response, and turn its statistics into per-token WAAD, FAI, token sets and credit weights.

One forward per problem captures the row statistics ``waad`` and ``mean_distance`` and the key statistic
``fai`` for the middle-third layers; no attention map is kept, so long traces fit in memory.

FAI and the seam. The seam's ``fai`` of key j averages p_ij over all queries i in [j + H_lo,
min(T - 1, j + H_hi)]. For a response key s every such i is itself a response token, so it equals the
spec's T(s) = {t in R : s + H_lo <= t <= min(N, s + H_hi)} exactly. Response keys with an empty T(s)
(the last H_lo tokens) get FAI = NaN here (the seam reports 0) and are never anchors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from workbench.analyses.rhythm.credit import RhythmParams, credit_weights
from workbench.analyses.rhythm.detect import group_rhythm, middle_third, top_fraction
from workbench.analyses.rhythm.problems import INSTRUCTION, Problem, is_correct
from workbench.seam.spec import CaptureSpec

ALTERNATIVES = 6  # top ids kept per position for the perturbation test (top-5 alternatives + original)


@dataclass
class ResponseRhythm:
    """Per-token rhythm of one response; arrays are indexed by response position."""

    problem: str
    prompt_length: int
    new_ids: np.ndarray
    tokens: list[str]
    text: str
    waad: np.ndarray
    fai: np.ndarray
    delta: np.ndarray
    entropy: np.ndarray  # of the distribution that produced token t (logits at t - 1)
    entropy_next: np.ndarray  # of the distribution at t (predicting t + 1)
    distance: np.ndarray  # (layer, head) mean backward distance over response rows
    local: np.ndarray  # (layer, head) bool
    global_: np.ndarray
    credit: dict[str, np.ndarray]
    top_ids: np.ndarray  # (n, ALTERNATIVES) ids ranked by the distribution that produced token t
    correct: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.new_ids.size)

    def frame(self) -> pd.DataFrame:
        n = self.length
        return pd.DataFrame(
            {
                "problem": [self.problem] * n,
                "position": np.arange(n),
                "absolute_position": self.prompt_length + np.arange(n),
                "token_id": self.new_ids.astype(np.int64),
                "token": self.tokens,
                "waad": self.waad,
                "fai": self.fai,
                "delta_waad": self.delta,
                "entropy": self.entropy,
                "entropy_next": self.entropy_next,
                **{
                    name: self.credit[name]
                    for name in ("is_preplan", "is_anchor", "is_dominated", "intro_position")
                },
                **{name: self.credit[name] for name in ("credit_local", "credit_global", "credit_coupled")},
            }
        )


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate_batch(
    model, prompts: Sequence[torch.Tensor], max_new_tokens: int, *, batch_size: int = 8, progress=None
):
    """Greedy continuations of token-id prompts, several at a time (left padding, plain SDPA, no capture).

    Returns one 1-D id tensor per prompt, cut before the first end-of-sequence token.
    """
    eos = model.tokenizer.eos_token_id
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else eos
    outputs = []
    for batch in _batches(list(prompts), max(1, batch_size)):
        width = max(int(p.numel()) for p in batch)
        for p in batch:
            model.check_length(int(p.numel()) + max_new_tokens)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, p in enumerate(batch):
            ids[row, width - p.numel() :] = p.reshape(-1)
            mask[row, width - p.numel() :] = 1
        with torch.no_grad():
            out = model.hf.generate(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
            )
        for row in out[:, width:].cpu():
            row = row.tolist()
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            outputs.append(torch.tensor(row, dtype=torch.long))
        if progress is not None:
            progress.update(len(batch))
    return outputs


def capture_spec(layers: Sequence[int], params: RhythmParams) -> CaptureSpec:
    return CaptureSpec(
        layers=tuple(layers),
        statistics=("waad", "mean_distance"),
        key_statistics=("fai",),
        waad_window=params.waad_window,
        fai_window=params.fai_window,
    )


def analyse_response(
    model,
    problem: Problem,
    prompt_ids: torch.Tensor,
    new_ids: torch.Tensor,
    *,
    layers: Sequence[int],
    params: RhythmParams,
) -> ResponseRhythm:
    """One extra forward over prompt + response; WAAD from the local group, FAI from the global group."""
    prompt_ids, new_ids = prompt_ids.reshape(-1), new_ids.reshape(-1)
    ids = torch.cat([prompt_ids, new_ids])[None]
    logits, cap = model.run(ids, capture_spec(layers, params))
    return _rhythm(
        model,
        problem,
        prompt_ids,
        new_ids,
        logits[0],
        cap.row["mean_distance"][0].numpy(),
        cap.row["waad"][0].numpy(),
        cap.key["fai"][0].numpy(),
        params,
    )


def analyse_batch(
    model,
    problems: Sequence[Problem],
    prompts: Sequence[torch.Tensor],
    responses: Sequence[torch.Tensor],
    *,
    layers: Sequence[int],
    params: RhythmParams,
    batch_size: int = 16,
) -> list[ResponseRhythm]:
    """``analyse_response`` for many responses, ``batch_size`` per forward (right-padded; padded positions
    are masked out of every statistic, so each result equals the one-at-a-time result)."""
    spec = capture_spec(layers, params)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else model.tokenizer.eos_token_id
    out = []
    for start in range(0, len(problems), max(1, batch_size)):
        chunk = range(start, min(len(problems), start + batch_size))
        sequences = [torch.cat([prompts[i].reshape(-1), responses[i].reshape(-1)]) for i in chunk]
        width = max(int(s.numel()) for s in sequences)
        ids = torch.full((len(sequences), width), pad or 0, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : sequence.numel()] = sequence
            mask[row, : sequence.numel()] = 1
        logits, cap = model.run(ids, spec, attention_mask=mask)
        for row, i in enumerate(chunk):
            total = int(sequences[row].numel())
            out.append(
                _rhythm(
                    model,
                    problems[i],
                    prompts[i].reshape(-1),
                    responses[i].reshape(-1),
                    logits[row, :total],
                    cap.row["mean_distance"][row, ..., :total].numpy(),
                    cap.row["waad"][row, ..., :total].numpy(),
                    cap.key["fai"][row, ..., :total].numpy(),
                    params,
                )
            )
    return out


def _rhythm(model, problem, prompt_ids, new_ids, logits, mean_distance, waad, fai, params) -> ResponseRhythm:
    """The per-token rhythm of one response from its forward's logits (T, vocab) and seam statistics."""
    start, n = int(prompt_ids.numel()), int(new_ids.numel())
    grouped = group_rhythm(
        mean_distance, waad, fai, start, group_fraction=params.group_fraction, fai_window=params.fai_window
    )
    waad, fai = grouped["waad"], grouped["fai"]
    log_probs = torch.log_softmax(logits.double(), dim=-1)  # on the model's device; copied once below
    entropy_all = -(log_probs.exp() * log_probs).sum(-1).cpu().numpy()
    producing = log_probs[start - 1 : start + n - 1]
    top_ids = producing.topk(min(ALTERNATIVES, producing.shape[-1]), dim=-1).indices.cpu().numpy()
    credit = credit_weights(waad, fai, params)
    tokens = [model.tokenizer.decode([int(t)]) for t in new_ids]
    text = model.tokenizer.decode(new_ids.tolist(), skip_special_tokens=True)
    return ResponseRhythm(
        problem=problem.id,
        prompt_length=start,
        new_ids=new_ids.numpy(),
        tokens=tokens,
        text=text,
        waad=waad,
        fai=fai,
        delta=np.abs(np.diff(waad, append=np.nan)),
        entropy=entropy_all[start - 1 : start + n - 1],
        entropy_next=entropy_all[start : start + n],
        distance=grouped["distance"],
        local=grouped["local"],
        global_=grouped["global"],
        credit=credit,
        top_ids=top_ids,
        correct=is_correct(text, problem.answer),
    )


def perturbation_test(
    model,
    responses: Sequence[ResponseRhythm],
    prompts: Sequence[torch.Tensor],
    *,
    fraction: float = 0.1,
    continuation: int = 32,
    seed: int = 0,
    batch_size: int = 8,
    progress=None,
) -> dict:
    """Swap one high-FAI and one low-FAI token per response for a top-5 alternative, continue greedily,
    and compare each continuation with the original one (Jaccard of token sets; lower = moved more)."""
    rng = np.random.default_rng(seed)
    jobs, pairs = [], []
    for response, prompt in zip(responses, prompts, strict=True):
        fai = response.fai.copy()
        fai[np.arange(response.length) > response.length - 1 - continuation] = np.nan  # need a continuation
        if np.isfinite(fai).sum() < 4:
            continue
        high = np.flatnonzero(top_fraction(fai, fraction))
        low = np.flatnonzero(top_fraction(-fai, fraction))
        chosen = []
        for candidates in (high, low):
            s = int(rng.choice(candidates))
            options = [
                int(t) for t in response.top_ids[s][:ALTERNATIVES] if int(t) != int(response.new_ids[s])
            ][:5]
            alternative = int(rng.choice(options))
            prefix = torch.cat(
                [prompt.reshape(-1), torch.as_tensor(response.new_ids[:s]), torch.tensor([alternative])]
            )
            original = response.new_ids[s + 1 : s + 1 + continuation].tolist()
            chosen.append(len(jobs))
            jobs.append((prefix, original, s))
        pairs.append((response.problem, *chosen))
    if not jobs:
        return {"pairs": 0}
    outputs = generate_batch(
        model, [j[0] for j in jobs], continuation, batch_size=batch_size, progress=progress
    )
    from workbench.analyses.rhythm.statistics import jaccard

    scores = [jaccard(out.tolist(), job[1]) for out, job in zip(outputs, jobs, strict=True)]
    high_scores = np.array([scores[h] for _, h, _ in pairs])
    low_scores = np.array([scores[lo] for _, _, lo in pairs])
    wins, losses = int((high_scores < low_scores).sum()), int((high_scores > low_scores).sum())
    return {
        "pairs": len(pairs),
        "fraction": fraction,
        "continuation": continuation,
        "jaccard_high_fai": float(high_scores.mean()),
        "jaccard_low_fai": float(low_scores.mean()),
        "high_moved_more": wins,
        "low_moved_more": losses,
        "ties": len(pairs) - wins - losses,
        "high_moved_more_rate": wins / len(pairs),
        "sign_test_p": sign_test(wins, losses),
        "trials": [
            {
                "problem": p,
                "high_position": jobs[h][2],
                "low_position": jobs[lo][2],
                "jaccard_high": scores[h],
                "jaccard_low": scores[lo],
            }
            for p, h, lo in pairs
        ],
    }


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (ties dropped)."""
    n = wins + losses
    if n == 0:
        return float("nan")
    tail = sum(math.comb(n, k) for k in range(0, min(wins, losses) + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def default_layers(model) -> tuple[int, ...]:
    return middle_third(model.shape.num_layers)


def run_rhythm(
    model,
    problems: Sequence[Problem],
    *,
    max_new_tokens: int = 128,
    params: RhythmParams | None = None,
    layers: Sequence[int] | None = None,
    instruction: str = INSTRUCTION,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[list[ResponseRhythm], list[torch.Tensor]]:
    """Generate and analyse every problem; returns the per-response rhythms and their prompt ids."""
    from tqdm.auto import tqdm

    params = params or RhythmParams()
    layers = tuple(layers) if layers is not None else default_layers(model)
    prompts = [model.encode(p.prompt(instruction), chat=True)[0] for p in problems]
    with tqdm(total=len(prompts), desc="generate", unit="problem", disable=not progress) as bar:
        responses = generate_batch(model, prompts, max_new_tokens, batch_size=batch_size, progress=bar)
    results, kept = [], []
    for problem, prompt, new_ids in tqdm(
        list(zip(problems, prompts, responses, strict=True)),
        desc="capture",
        unit="problem",
        disable=not progress,
    ):
        if new_ids.numel() < 2:
            continue  # nothing to analyse (the model stopped at once)
        results.append(analyse_response(model, problem, prompt, new_ids, layers=layers, params=params))
        kept.append(prompt)
    return results, kept
