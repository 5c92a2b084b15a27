"""Attention sinks: Sink_k (Gu et al.), first-token mass per head, hidden sinks (ACT) and massive
activations (VAR), for a model and a text.

The text is cut into consecutive non-overlapping windows of ``window`` tokens (no BOS or template; a
last short window is dropped), and each window is one sequence. From the seam's key statistic
``received`` (sum of attention a key gets over all queries) the column mean of key j (0-indexed) is
``alpha_j = received_j / (T - j)``: the mean over the queries that can see it, Gu et al.'s importance
score. Then

* ``Sink_k^eps`` = fraction of (layer, head) with ``alpha_{k-1} > eps``, averaged over windows;
* first-token mass per head = ``alpha_0`` (mean over every query, the first included), averaged over
  windows; the head table also gives the fraction of windows where it exceeds eps;
* hidden sinks = positions j >= 1 with ``alpha_j > 0.1`` in some head (ACT's criterion). Positions seen
  by fewer than ``T/2`` queries are left out (``max_position``): there a column mean is dominated by a
  token's attention to itself (the rise of Sink_k near k = T in §9 of the spec);
* massive activations = residual dimensions d with ``|x_0[d] / rms(x_0)| > 20`` at the sink token
  (position 0) entering each block, with ``rms`` unweighted (x / sqrt(mean(x^2) + 1e-6)). The dims that
  do so in at least half of the windows at layers >= 2 are the sink dims D; a token j >= 1 whose
  ``max_{d in D} |x_j[d]/rms|`` exceeds 20 at some layer >= 2 is a massive-activation sink (VAR's test),
  compared with the hidden sinks by precision and recall.
"""

from __future__ import annotations

import contextlib
import string
from collections import Counter, defaultdict

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.analyses.heads import heads_json, make_head_table
from workbench.runners.hf import InputError, Model
from workbench.seam.spec import CaptureSpec, SpecError

STOPWORDS = {"the", "a", "an", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as", "was", "i", "you"}


def windows(ids: torch.Tensor, window: int) -> torch.Tensor:
    """(n, window) consecutive non-overlapping windows of a (1, T) or (T,) id tensor; a short tail is dropped."""
    if window < 2:
        raise SpecError(f"window must be at least 2 tokens, got {window}")
    flat = ids.reshape(-1)
    count = flat.shape[0] // window
    if count == 0:
        raise InputError(f"the text has {flat.shape[0]} tokens, fewer than one window of {window}; give more text or a smaller --window")
    return flat[: count * window].view(count, window)


def column_means(received: torch.Tensor) -> torch.Tensor:
    """alpha_j = received_j / (T - j): (..., key) -> (..., key)."""
    length = received.shape[-1]
    count = torch.arange(length, 0, -1, dtype=received.dtype, device=received.device)
    return received / count


def sink_rates(alpha: torch.Tensor, eps: float = 0.3, max_k: int = 32) -> torch.Tensor:
    """Sink_k^eps for k = 1..max_k from alpha (window, layer, head, key): fraction of heads, mean over windows."""
    max_k = min(max_k, alpha.shape[-1])
    return (alpha[..., :max_k] > eps).to(torch.float64).mean(dim=(0, 1, 2))


@contextlib.contextmanager
def residual_inputs(model: Model):
    """Record the residual stream entering every decoder block: yields a dict layer -> (batch, T, hidden)."""
    captured: dict[int, torch.Tensor] = {}

    def observe(index, hidden):
        captured[index] = hidden.detach().float().cpu()

    try:
        model.adapter.blocks(model.hf)
    except TypeError as error:
        raise SpecError(f"{model.name}: massive activations need the model's blocks: {error}") from None
    with model.adapter.watch_block_inputs(model.hf, observe):
        yield captured


def normalised(x: torch.Tensor) -> torch.Tensor:
    """RMS normalisation without the learned weight."""
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def token_type(token: str) -> str:
    if "\n" in token:
        return "newline"
    stripped = token.strip()
    if not stripped:
        return "whitespace"
    if all(c in string.punctuation or c in "“”‘’—–…" for c in stripped):
        return "punctuation"
    if stripped.isdigit():
        return "number"
    if stripped.lower() in STOPWORDS:
        return "stopword"
    return "word"


def sinks_report(
    model: Model,
    text: str,
    *,
    window: int = 64,
    eps: float = 0.3,
    max_k: int = 32,
    hidden_threshold: float = 0.1,
    massive_threshold: float = 20.0,
    max_windows: int | None = None,
    massive_from_layer: int = 2,
    interventions=(),
    batch_size: int = 8,
    progress: bool = False,
) -> tuple[dict, dict[str, pd.DataFrame]]:
    """The SINKS.json dictionary and the tables behind it (heads, hidden_sinks, massive_dims, sink_k).

    ``interventions`` (optional) are active during the runs, e.g. to see sinks under a calibration.
    ``massive_from_layer`` is the first layer used for the sink dims and VAR's token test (clipped to
    the model's last layer).
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty: give at least one window of tokens")
    model.check_length(window)
    # tokenised whole (the text may be longer than the model's window; each window is within it)
    ids = windows(model.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"], window)
    if max_windows is not None:
        ids = ids[:max_windows]
    shape = model.shape
    spec = CaptureSpec(statistics=(), key_statistics=("received",))
    alphas, residual_rows = [], []
    batches = range(0, ids.shape[0], batch_size)
    for start in tqdm(batches, desc="windows", disable=not progress, leave=False):
        chunk = ids[start : start + batch_size]
        with residual_inputs(model) as residual:
            _, capture = model.run(chunk, spec, interventions)
        alphas.append(column_means(capture.key["received"].double()))  # (batch, layer, head, key)
        residual_rows.append(torch.stack([normalised(residual[layer]) for layer in range(shape.num_layers)], dim=1))
    alpha = torch.cat(alphas)  # (window, layer, head, key)
    norm = torch.cat(residual_rows)  # (window, layer, T, hidden)
    tokens = [[model.tokenizer.decode([t]) for t in row] for row in ids.tolist()]

    rates = sink_rates(alpha, eps, max_k)
    first = alpha[..., 0]
    head_rows = [
        {"layer": layer, "head": head, "kv_head": shape.kv_head(head), "score": float(first[:, layer, head].mean()),
         "sink_fraction": float((first[:, layer, head] > eps).double().mean())}
        for layer in range(shape.num_layers) for head in range(shape.num_heads)
    ]
    params = {"window": window, "eps": eps, "windows": int(ids.shape[0]), "hidden_threshold": hidden_threshold,
              "massive_threshold": massive_threshold, "max_position": window // 2}
    heads = make_head_table(head_rows, "sinks", params)

    # hidden sinks (ACT): alpha_j > threshold at 1 <= j < T/2
    max_position = window // 2
    hits = (alpha[..., 1:max_position] > hidden_threshold).nonzero().tolist()
    by_position: dict[tuple[int, int], dict] = {}
    for w, layer, head, j in hits:
        position = j + 1
        entry = by_position.setdefault((w, position), {"window": w, "position": position, "token": tokens[w][position],
                                                       "heads": 0, "layers": set(), "max_column_mean": 0.0})
        entry["heads"] += 1
        entry["layers"].add(layer)
        entry["max_column_mean"] = max(entry["max_column_mean"], float(alpha[w, layer, head, position]))
    positions = sorted(by_position.values(), key=lambda e: (-e["heads"], e["window"], e["position"]))
    for entry in positions:
        entry["layers"] = sorted(entry["layers"])
        entry["type"] = token_type(entry["token"])
    token_hits: dict[str, dict] = defaultdict(lambda: {"hits": 0, "positions": 0})
    for entry in positions:
        token_hits[entry["token"]]["hits"] += entry["heads"]
        token_hits[entry["token"]]["positions"] += 1
    occurrences = Counter(tok for row in tokens for tok in row[1:max_position])
    by_token = sorted(
        ({"token": tok, "type": token_type(tok), "head_hits": v["hits"], "positions": v["positions"],
          "occurrences": occurrences[tok], "rate": v["positions"] / max(1, occurrences[tok])} for tok, v in token_hits.items()),
        key=lambda e: -e["head_hits"],
    )
    type_counts = Counter(entry["type"] for entry in positions)
    all_types = Counter(token_type(tok) for row in tokens for tok in row[1:max_position])
    hidden = {
        "threshold": hidden_threshold, "max_position": max_position, "positions_flagged": len(positions),
        "positions_checked": int(ids.shape[0]) * (max_position - 1), "head_hits": len(hits),
        "by_type": {t: {"flagged": type_counts.get(t, 0), "occurrences": n, "rate": type_counts.get(t, 0) / n}
                    for t, n in sorted(all_types.items())},
        "by_token": by_token, "positions": positions,
    }

    # massive activations at the sink token (position 0) per layer, then VAR's per-token test
    at_sink = norm[:, :, 0, :].abs()  # (window, layer, hidden)
    exceed = at_sink > massive_threshold
    per_layer, dim_rows = [], []
    for layer in range(shape.num_layers):
        fraction = exceed[:, layer].double().mean(0)
        dims = [int(d) for d in (fraction > 0).nonzero().flatten().tolist()]
        items = [{"dim": d, "fraction": float(fraction[d]), "mean_abs": float(at_sink[:, layer, d].mean()),
                  "sign": int(torch.sign(norm[:, layer, 0, d].mean()))} for d in dims]
        items.sort(key=lambda e: -e["mean_abs"])
        per_layer.append({"layer": layer, "dims": items})
        dim_rows += [{"layer": layer, **e} for e in items]
    from_layer = max(0, min(massive_from_layer, shape.num_layers - 1))
    sink_dims = sorted({e["dim"] for row in per_layer[from_layer:] for e in row["dims"] if e["fraction"] >= 0.5})
    massive_tokens, agreement = [], {}
    if sink_dims:
        phi = norm[:, from_layer:, 1:max_position][..., sink_dims].abs().amax(-1)  # (window, layer, position - 1)
        flagged = (phi > massive_threshold).nonzero().tolist()
        token_layers: dict[tuple[int, int], set] = defaultdict(set)
        for w, layer, j in flagged:
            token_layers[(w, j + 1)].add(layer + from_layer)
        massive_tokens = [{"window": w, "position": p, "token": tokens[w][p], "type": token_type(tokens[w][p]),
                           "layers": sorted(ls)} for (w, p), ls in sorted(token_layers.items())]
        act_set, var_set = set(by_position), set(token_layers)
        both = len(act_set & var_set)
        agreement = {"massive_tokens": len(var_set), "hidden_sinks": len(act_set), "both": both,
                     "precision": both / len(var_set) if var_set else None,
                     "recall": both / len(act_set) if act_set else None}
    massive = {"threshold": massive_threshold, "from_layer": from_layer, "sink_dims": sink_dims, "per_layer": per_layer,
               "tokens": massive_tokens, "agreement_with_hidden_sinks": agreement}

    report = {
        "model": model.name, "method": "sinks", "params": params,
        "sink_1": float(rates[0]), "sink_k": [float(v) for v in rates],
        "sink_1_per_layer": [float(v) for v in (first > eps).double().mean(dim=(0, 2))],
        "sink_1_per_window": [float(v) for v in (first > eps).double().mean(dim=(1, 2))],  # for intervals
        "heads": heads_json(heads, model.name, "sinks", params),
        "hidden_sinks": hidden, "massive_dims": massive,
    }
    tables = {
        "heads": heads,
        "sink_k": pd.DataFrame({"k": range(1, len(rates) + 1), "sink": rates.tolist()}),
        "hidden_sinks": pd.DataFrame([{**e, "layers": ",".join(map(str, e["layers"]))} for e in positions]
                                     or [{"window": 0, "position": 0, "token": "", "heads": 0, "layers": "", "max_column_mean": 0.0, "type": ""}]).iloc[: len(positions)],
        "massive_dims": pd.DataFrame(dim_rows or [{"layer": 0, "dim": 0, "fraction": 0.0, "mean_abs": 0.0, "sign": 0}]).iloc[: len(dim_rows)],
    }
    return report, tables


__all__ = ["windows", "column_means", "sink_rates", "residual_inputs", "normalised", "token_type", "sinks_report"]
