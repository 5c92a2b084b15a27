"""Streaming vs retrieval heads (DuoAttention, Xiao et al. 2024), and a cheap attention-pattern proxy.

Gate optimisation: one gate alpha in [0, 1] per KV head mixes full attention with streaming attention
(causal attention restricted to the first ``sink`` keys plus the last ``recent`` keys):
``out = alpha * FullAttn + (1 - alpha) * StreamAttn``. Head outputs are linear in the probability row,
and StreamAttn's row is the full row restricted to the window and renormalised, so the mix is one
probability edit per head (``StreamingMix``), which the seam runs per layer as two SDPA calls (full and
windowed) mixed per head (``workbench.seam.streaming``); gradients reach alpha through both. The
loss distils the final hidden states of the unmodified model on the passkey answer positions, plus
``l1`` times the mean |alpha|. All model weights stay frozen.

Proxy: long-range mass LRM = mean over queries i >= sink + recent of 1 - (mass on sink + recent keys),
read from the seam's ``sink_mass`` and ``local_mass`` statistics (no overlap for such i), pooled per KV
group.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from workbench.analyses.compare import spearman
from workbench.analyses.heads import make_head_table
from workbench.analyses.retrieval.haystack import Haystack, PromptBuilder, read_haystack
from workbench.analyses.retrieval.niah import BATCH_SIZE, grid_prompts, resolve_inputs, run_conditions
from workbench.seam.interventions import StreamingMix
from workbench.seam.spec import CaptureSpec, SpecError

NATO = ("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
        "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


# --- passkey data ------------------------------------------------------------------------------


@dataclass
class PasskeySample:
    ids: torch.Tensor  # (1, T)
    label_mask: torch.Tensor  # (T,) bool: the question/answer tail, where the distillation loss is taken


def passkey_sample(tokenizer, haystack_ids: list[int], length: int, rng: random.Random,
                   passkeys: int = 2, words: int = 8) -> PasskeySample:
    """DuoAttention-style sample: passkeys of NATO words at sorted random depths, QA tail at the end."""
    keys = [" ".join(rng.choice(NATO) for _ in range(words)) for _ in range(passkeys)]

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    head = encode("This is a very long story book: <book> ")
    inserts = [encode(f"\n\nRemember this sequence of words, it's the {ORDINALS[i]} passkey to the vault: {k}\n\n")
               for i, k in enumerate(keys)]
    tail = encode(" </book>.\n\n") + [t for i, k in enumerate(keys) for t in encode(
        f"Based on the content of the book, what is the {ORDINALS[i]} passkey to the vault?\nPasskey: {k}\n\n")]
    budget = length - len(head) - len(tail) - sum(len(x) for x in inserts)
    if budget < 32:
        raise SpecError(f"passkey samples need a longer context than {length} tokens (try >= {length - budget + 64})")
    start = rng.randrange(0, max(1, len(haystack_ids) - budget))
    context = haystack_ids[start : start + budget]
    depths = sorted(rng.uniform(0.05, 0.95) for _ in keys)
    ids, last = list(head), 0
    for depth, insert in zip(depths, inserts, strict=True):
        cut = int(len(context) * depth)
        ids += context[last:cut] + insert
        last = cut
    ids += context[last:]
    labels = [False] * len(ids) + [True] * len(tail)
    ids += tail
    return PasskeySample(torch.tensor([ids]), torch.tensor(labels))


def _haystack_ids(model, haystack, tokens: int = 40_000) -> list[int]:
    """A pool of haystack tokens to draw sample windows from (a prefix; tokenising all is slow)."""
    haystack = haystack if isinstance(haystack, Haystack) else read_haystack(haystack)
    return PromptBuilder(model, haystack, chat=False).tokens(tokens)


# --- gate optimisation -------------------------------------------------------------------------


def _lr_factor(step: int, total: int) -> float:
    """DuoAttention's schedule: linear warm-up over the first 20% from 0.1, linear decay over the last 20%."""
    return min(1.0, max((step + 1) / (0.2 * total), 0.1), max((total - step) / (0.2 * total), 0.1))


def _last_hidden(model, ids):
    """The decoder's last hidden state, after the final norm (no vocabulary projection: not needed)."""
    return model.hf.base_model(input_ids=ids, use_cache=False).last_hidden_state


def _sample_length(length: int | tuple[int, int], rng: random.Random) -> int:
    """A fixed context length, or one drawn uniformly from ``(low, high)`` (the repo's length range)."""
    if isinstance(length, int):
        return length
    low, high = (int(x) for x in length)
    if not 0 < low <= high:
        raise SpecError(f"a length range needs 0 < low <= high, got {length}")
    return rng.randint(low, high)


@dataclass(frozen=True)
class Plateau:
    """When the gate optimisation counts as converged (fixed before any run).

    Every ``window`` steps (once ``2 * window`` steps and the warm-up are done) compare the mean loss of
    the last ``window`` steps with the mean of the ``window`` before: converged when the relative change
    is below ``tolerance`` *and* no gate moved by more than ``gate_tolerance`` between the two window ends.
    The loss of one step is noisy (a new random sample each step), hence means over windows.
    """

    window: int = 100
    tolerance: float = 0.02
    gate_tolerance: float = 0.05

    def check(self, losses: Sequence[float], gates_then, gates_now) -> dict:
        w = self.window
        recent, before = float(np.mean(losses[-w:])), float(np.mean(losses[-2 * w : -w]))
        change = abs(recent - before) / max(abs(before), 1e-12)
        moved = float(np.abs(np.asarray(gates_now) - np.asarray(gates_then)).max())
        return {"step": len(losses), "mean_loss": recent, "previous_mean_loss": before, "relative_change": change,
                "max_gate_change": moved, "converged": change < self.tolerance and moved < self.gate_tolerance}


def _passkey_batch(model, ids_pool, length, rng, batch, passkeys, words):
    """``batch`` passkey samples of one length (drawn once per step): ids (batch, T), labels (batch, T)."""
    tokens = _sample_length(length, rng)
    samples = [passkey_sample(model.tokenizer, ids_pool, tokens, rng, passkeys, words) for _ in range(batch)]
    return torch.cat([s.ids for s in samples]), torch.stack([s.label_mask for s in samples])


def train_gates(
    model,
    haystack=None,
    *,
    length: int | tuple[int, int] = 384,
    steps: int = 200,
    sink: int = 16,
    recent: int = 64,
    l1: float = 0.05,
    lr: float = 0.02,
    passkeys: int = 2,
    words: int = 8,
    seed: int = 0,
    batch: int = 1,
    plateau: Plateau | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    on_window=None,
    fit_schedule: bool = False,
) -> pd.DataFrame:
    """Optimise one gate per KV head; returns ``layer, kv_head, gate`` with the loss history in attrs.

    ``length`` is one context length, or a ``(low, high)`` range each step's length is drawn from;
    ``batch`` samples of that length per step. The mix runs through the seam's batched layer path (two
    SDPA calls per layer, ``workbench.seam.streaming``). ``plateau`` (a ``Plateau``) stops the run once
    converged; the schedule stays the one for ``steps``. ``max_seconds`` stops it early too. What stopped
    it is ``attrs["params"]["stopped"]`` (``plateau``, ``steps`` or ``time``), the checks are
    ``attrs["plateau_checks"]``, and ``on_window(table)`` sees the gates after every plateau window.
    ``fit_schedule`` (with ``max_seconds``): after step 15 the schedule's length becomes the smaller of
    ``steps`` and the steps that fit in ``max_seconds`` at the pace of steps 5-15 (so its decay phase
    runs inside the time); ``attrs["params"]["schedule_steps"]`` records it.
    """
    from tqdm.auto import tqdm

    started = time.monotonic()
    shape = model.shape
    rng = random.Random(seed)
    torch.manual_seed(seed)
    ids_pool = _haystack_ids(model, haystack)
    alpha = torch.nn.Parameter(torch.ones(shape.num_layers, shape.num_kv_heads, device=model.device))  # on the model: no copy per head
    optimiser = torch.optim.AdamW([alpha], lr=lr, weight_decay=0.0)
    total = [steps]  # the schedule's length; fit_schedule may shorten it once
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: _lr_factor(s, total[0]))
    frozen = [p.requires_grad for p in model.hf.parameters()]
    for p in model.hf.parameters():
        p.requires_grad_(False)
    history, checks, stopped = [], [], "steps"
    window_start = alpha.detach().clamp(0, 1).cpu().numpy().copy()
    paced = None
    try:
        for step in tqdm(range(steps), desc="gates", disable=not progress, leave=False):
            if step >= total[0]:
                break
            if max_seconds is not None and step and time.monotonic() - started > max_seconds:
                stopped = "time"
                break
            if fit_schedule and max_seconds is not None:
                if step == 5:
                    paced = time.monotonic()
                elif step == 15:
                    pace = (time.monotonic() - paced) / 10
                    total[0] = max(16, min(steps, int((max_seconds - (time.monotonic() - started)) / pace) + 15))
            ids, labels = _passkey_batch(model, ids_pool, length, rng, batch, passkeys, words)
            ids, labels = ids.to(model.device), labels.to(model.device)
            with torch.no_grad():
                teacher = _last_hidden(model, ids)
            with torch.no_grad():
                alpha.clamp_(0, 1)
            mix = [StreamingMix(layer, head, scope="both", sink=sink, recent=recent, gate=alpha[layer, shape.kv_head(head)])
                   for layer in range(shape.num_layers) for head in range(shape.num_heads)]
            with model.seam(None, mix):
                student = _last_hidden(model, ids)
            distill = ((teacher - student) ** 2).mean(-1)[labels].mean()
            regular = alpha.abs().mean()
            loss = distill + l1 * regular
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            history.append({"step": step, "tokens": int(ids.shape[-1]), "loss": loss.item(), "distill": distill.item(),
                            "l1": regular.item(), "seconds": round(time.monotonic() - started, 3)})
            if plateau is not None and (step + 1) % plateau.window == 0:
                now = alpha.detach().clamp(0, 1).cpu().numpy().copy()
                if step + 1 >= max(2 * plateau.window, int(0.2 * total[0])):
                    checks.append(plateau.check([h["loss"] for h in history], window_start, now))
                if on_window is not None:
                    on_window(_gate_table(now, shape))
                window_start = now
                if checks and checks[-1]["converged"]:
                    stopped = "plateau"
                    break
    finally:
        for p, flag in zip(model.hf.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
    final = alpha.detach().clamp(0, 1).cpu().numpy()
    if plateau is not None and stopped != "plateau" and len(history) >= 2 * plateau.window:
        if not checks or checks[-1]["step"] != len(history):  # where the run ended, off the window grid
            checks.append(plateau.check([h["loss"] for h in history], window_start, final))
            checks[-1]["at_end"] = True
    table = _gate_table(alpha.detach().clamp(0, 1).cpu().numpy(), shape)
    table.attrs["history"] = history
    table.attrs["plateau_checks"] = checks
    table.attrs["params"] = {"length": length if isinstance(length, int) else list(length), "steps": steps, "sink": sink, "recent": recent, "l1": l1, "lr": lr,
                             "passkeys": passkeys, "words": words, "seed": seed, "batch": batch, "steps_done": len(history),
                             "schedule_steps": total[0], "stopped": stopped, "plateau": None if plateau is None else vars(plateau)}
    return table


def _gate_table(gates: np.ndarray, shape) -> pd.DataFrame:
    return pd.DataFrame([{"layer": layer, "kv_head": kv, "gate": float(gates[layer, kv])}
                         for layer in range(shape.num_layers) for kv in range(shape.num_kv_heads)])


# --- pattern proxy -----------------------------------------------------------------------------


def long_range_mass(model, haystack=None, *, length: int = 512, samples: int = 4, sink: int = 16, recent: int = 64,
                    seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """LRM per query head over passkey samples: ``layer, head, kv_head, lrm``."""
    rng = random.Random(seed)
    ids_pool = _haystack_ids(model, haystack)
    spec = CaptureSpec(statistics=("sink_mass", "local_mass"), sink_tokens=max(1, sink), local_window=recent)
    totals = None
    for _ in range(samples):
        sample = passkey_sample(model.tokenizer, ids_pool, length, rng)
        _, capture = model.run(sample.ids, spec, progress=progress)
        far = torch.as_tensor(capture.positions >= sink + recent)
        mass = 1 - capture.row["sink_mass"][0] - capture.row["local_mass"][0]  # (layer, head, query)
        value = mass[..., far].to(torch.float64).mean(-1)
        totals = value if totals is None else totals + value
    totals = (totals / samples).numpy()
    shape = model.shape
    return pd.DataFrame([{"layer": layer, "head": head, "kv_head": shape.kv_head(head), "lrm": float(totals[layer, head])}
                         for layer in range(shape.num_layers) for head in range(shape.num_heads)])


# --- deployment check ----------------------------------------------------------------------------


def streaming_mask(shape, full_kv: Sequence[tuple[int, int]], sink: int = 16, recent: int = 64) -> list[StreamingMix]:
    """Interventions that make every KV group not in ``full_kv`` a streaming head (sink + recent keys only,
    prefill and decode), as DuoAttention deploys binarised gates."""
    keep = {(int(a), int(b)) for a, b in full_kv}
    return [StreamingMix(layer, head, scope="both", sink=sink, recent=recent, gate=0.0)
            for layer in range(shape.num_layers) for head in range(shape.num_heads)
            if (layer, shape.kv_head(head)) not in keep]


def full_heads_by_gate(gates: pd.DataFrame, ratio: float) -> list[tuple[int, int]]:
    """The top ``ratio`` of KV heads by gate (DuoAttention's sparsity quantile), ties broken by position."""
    count = int(round(ratio * len(gates)))
    ranked = gates.sort_values(["gate", "layer", "kv_head"], ascending=[False, True, True], kind="stable")
    return [(int(r.layer), int(r.kv_head)) for r in ranked.head(count).itertuples()]


def random_full_heads(gates: pd.DataFrame, ratio: float, seed: int) -> list[tuple[int, int]]:
    pool = [(int(r.layer), int(r.kv_head)) for r in gates.itertuples()]
    return sorted(random.Random(seed).sample(pool, int(round(ratio * len(pool)))))


def deployment_check(
    model,
    gates: pd.DataFrame,
    haystack=None,
    needles=None,
    lengths: Sequence[int] = (1024,),
    depths: Sequence[float] = (10, 50, 90),
    *,
    ratios: Sequence[float] = (0.25, 0.5),
    seeds: Sequence[int] = (0, 1),
    sink: int = 16,
    recent: int = 64,
    max_new_tokens: int = 32,
    progress: bool = True,
    return_runs: bool = False,
    on_condition=None,
    batch_size: int = BATCH_SIZE,
):
    """DuoAttention's check (b): NIAH success with full attention, with the top ``ratio`` of KV heads (by
    gate) kept full and the rest streaming, with random full/streaming splits at the same ratio, and with
    every head streaming. Default inputs: the synthetic passkey haystack and passkey needles.

    Returns one row per condition: ``condition, ratio, seed, success_rate, mean_rouge_recall, num_runs,
    full_kv_heads, drop``. ``on_condition`` receives the partial results after each condition (see
    ``run_conditions``). ``batch_size`` decodes the prompts of one length that many at a time.
    """
    haystack, needles = resolve_inputs(haystack, needles, "heldout")
    prompts = grid_prompts(PromptBuilder(model, haystack), needles, lengths, depths)
    shape = model.shape
    conditions = [("full", 1.0, None, None)]
    for ratio in ratios:
        conditions.append(("gate-top", ratio, None, full_heads_by_gate(gates, ratio)))
        conditions += [("random", ratio, seed, random_full_heads(gates, ratio, seed)) for seed in seeds]
    conditions.append(("all-streaming", 0.0, None, []))
    labelled = [(f"{name} {ratio:.2f}" + ("" if seed is None else f" seed {seed}"),
                 [] if full is None else streaming_mask(shape, full, sink, recent),
                 {"condition": name, "ratio": ratio, "seed": seed,
                  "full_kv_heads": "all" if full is None else ";".join(f"{a}.{b}" for a, b in full)})
                for name, ratio, seed, full in conditions]
    table, runs = run_conditions(model, prompts, labelled, max_new_tokens=max_new_tokens, progress=progress,
                                 on_condition=on_condition, batch_size=batch_size)
    table.attrs["params"] = {"lengths": [int(x) for x in lengths], "depths": [float(x) for x in depths],
                             "ratios": list(ratios), "seeds": list(seeds), "sink": sink, "recent": recent,
                             "haystack": haystack.source, "needles": [n.to_dict() for n in needles]}
    return (table, runs.drop(columns="full_kv_heads")) if return_runs else table


# --- tables and correlations -------------------------------------------------------------------


def streaming_head_table(model, per_kv: pd.DataFrame, column: str, method: str, params: dict | None = None):
    """Expand a per-KV-head score to the query heads of each group (HEADS.json names query heads)."""
    shape = model.shape
    values = {(int(r.layer), int(r.kv_head)): float(getattr(r, column)) for r in per_kv.itertuples()}
    rows = [{"layer": layer, "head": head, "kv_head": shape.kv_head(head), "score": values[(layer, shape.kv_head(head))]}
            for layer in range(shape.num_layers) for head in range(shape.num_heads)]
    return make_head_table(rows, method, params)


def per_kv(table: pd.DataFrame, column: str = "score", how: str = "mean") -> pd.DataFrame:
    """Pool a per-query-head column to KV heads."""
    return table.groupby(["layer", "kv_head"], as_index=False)[column].agg(how)


def correlations(gates: pd.DataFrame | None, lrm: pd.DataFrame | None, retrieval: pd.DataFrame | None) -> pd.DataFrame:
    """Spearman correlations per KV head between gate, LRM and the retrieval score (mean and max per group)."""
    frames = []
    if gates is not None:
        frames.append(gates[["layer", "kv_head", "gate"]])
    if lrm is not None:
        frames.append(per_kv(lrm, "lrm"))
    if retrieval is not None:
        frames.append(per_kv(retrieval, "score").rename(columns={"score": "retrieval_mean"}))
        frames.append(per_kv(retrieval, "score", "max").rename(columns={"score": "retrieval_max"}))
    if len(frames) < 2:
        raise SpecError("correlations need at least two of: gates, LRM, retrieval scores")
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.merge(frame, on=["layer", "kv_head"])
    columns = [c for c in merged.columns if c not in ("layer", "kv_head")]
    rows = [{"a": a, "b": b, "spearman": spearman(merged[a], merged[b]), "n": len(merged)}
            for i, a in enumerate(columns) for b in columns[i + 1 :]]
    out = pd.DataFrame(rows)
    out.attrs["per_kv"] = merged
    return out
