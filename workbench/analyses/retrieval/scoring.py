"""The retrieval score of Wu et al. (2024), computed from the seam's decode-row argmax capture.

At decode step t the model emits token w_t. The query row that produced w_t is position
``len(prompt) - 1 + t``: the prefill's last row emits the first token (the paper prefills prompt[:-1]
and feeds the last prompt token first; the row is the same). A head scores a hit at step t when its
top-1 attended key j* lies inside the answer span [s, e) and prompt[j*] == w_t; each hit adds 1/(e - s).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def decode_argmax(capture, prompt_length: int, num_new: int) -> torch.Tensor:
    """Top-1 key of the row that produced each generated token: (layer, head, step) long.

    ``capture.row["argmax"]`` has shape (batch, layer, head, query) over prefill + decode positions.
    """
    if capture is None or "argmax" not in capture.row:
        raise ValueError("the generation was run without the argmax capture; pass CaptureSpec(statistics=('argmax',))")
    positions = list(capture.positions)
    wanted = [prompt_length - 1 + t for t in range(num_new)]
    index = [positions.index(p) for p in wanted]
    return capture.row["argmax"][0][..., index].long()


def retrieval_hits(
    argmax: torch.Tensor, prompt_ids: torch.Tensor, new_ids: torch.Tensor, answer_span: tuple[int, int]
) -> torch.Tensor:
    """Per-head score of one run: (layer, head) float64 = (#hits) / |answer span|.

    argmax: (layer, head, step) top-1 key of the row that produced new_ids[step].
    """
    start, end = answer_span
    prompt_ids = torch.as_tensor(prompt_ids).long()
    new_ids = torch.as_tensor(new_ids).long()
    steps = min(argmax.shape[-1], new_ids.shape[0])
    argmax = argmax[..., :steps]
    inside = (argmax >= start) & (argmax < end)
    copied = prompt_ids[argmax.clamp(0, prompt_ids.shape[0] - 1)] == new_ids[:steps]
    hits = (inside & copied).sum(-1).to(torch.float64)
    return hits / (end - start)


def score_table(
    run_scores: list[np.ndarray], shape, *, threshold: float = 0.1, params: dict | None = None
) -> pd.DataFrame:
    """Head table from per-run (layer, head) score arrays of the successful runs: mean over runs."""
    layers, heads = shape.num_layers, shape.num_heads
    if run_scores:
        stacked = np.stack(run_scores)
        mean = stacked.mean(0)
        nonzero = (stacked > 0).mean(0)
    else:
        mean = np.zeros((layers, heads))
        nonzero = np.zeros((layers, heads))
    rows = [
        {
            "layer": layer,
            "head": head,
            "kv_head": shape.kv_head(head),
            "score": float(mean[layer, head]),
            "active_runs": float(nonzero[layer, head]),
            "retrieval_head": bool(mean[layer, head] > threshold),
        }
        for layer in range(layers)
        for head in range(heads)
    ]
    from workbench.analyses.heads import make_head_table

    params = dict(params or {})
    params.setdefault("threshold", threshold)
    params["successful_runs"] = len(run_scores)
    return make_head_table(rows, "retrieval", params)
