"""Helpers for the rhythm tests. Planted attention maps: a sawtooth of chunks in the local heads and tokens that
every later query attends to in the global heads."""

from __future__ import annotations

import numpy as np
import torch


def planted_maps(
    prompt: int = 8,
    response: int = 60,
    onsets: tuple[int, ...] = (6, 18, 30, 42, 54),
    anchors: tuple[int, ...] = (10, 30),
    layers: int = 2,
    heads: int = 5,
    noise: float = 0.02,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Attention (layer, head, query, key), rows summing to 1 over keys <= query.

    Heads, flat index: 0-2 local (previous token; uniform over the last 20 keys at chunk onsets), 3-5 global
    (sink key 0 plus the planted anchors), 6-9 middle (uniform over the last 8 keys). ``onsets`` and
    ``anchors`` are response positions.
    """
    rng = np.random.default_rng(seed)
    total = prompt + response
    causal = np.tril(np.ones((total, total)))
    onset_rows = {prompt + o for o in onsets}
    anchor_keys = [prompt + a for a in anchors]
    maps = np.zeros((layers * heads, total, total))
    for flat in range(layers * heads):
        for i in range(total):
            row = np.zeros(total)
            if flat < 3:
                if i in onset_rows:
                    low = max(0, i - 19)
                    row[low : i + 1] = 1.0 / (i + 1 - low)
                else:
                    row[max(i - 1, 0)] += 0.9
                    row[i] += 0.1
            elif flat < 6:
                row[0] += 0.4
                visible = [k for k in anchor_keys if k <= i]
                for k in visible:
                    row[k] += 0.4 / len(visible)
                if not visible:
                    row[0] += 0.4
                row[: i + 1] += 0.2 / (i + 1)
            else:
                low = max(0, i - 7)
                row[low : i + 1] = 1.0 / (i + 1 - low)
            jitter = rng.random(total) * causal[i]
            row = (1 - noise) * row + noise * jitter / jitter.sum()
            maps[flat, i] = row
    maps = maps.reshape(layers, heads, total, total)
    info = {"prompt": prompt, "response": response, "onsets": onsets, "anchors": anchors}
    return maps, info


def seam_statistics(maps: np.ndarray, waad_window: int = 10, fai_window=(10, 100)) -> dict[str, np.ndarray]:
    """Run planted maps through the seam's statistic accumulator (the code a real forward uses)."""
    from workbench.seam.plan import LayerPlan
    from workbench.seam.spec import CaptureSpec
    from workbench.seam.torch_path import Accumulator

    layers, heads, total, _ = maps.shape
    spec = CaptureSpec(
        statistics=("waad", "mean_distance"),
        key_statistics=("fai",),
        waad_window=waad_window,
        fai_window=fai_window,
    )
    out = {"waad": [], "mean_distance": [], "fai": []}
    for layer in range(layers):
        plan = LayerPlan(spec=spec, capture_heads=list(range(heads)), phase="prefill")
        accumulator = Accumulator(plan, 1, total, total, "cpu")
        p = torch.tensor(maps[layer], dtype=torch.float32)[None]
        accumulator.add(p, torch.zeros(1, heads, total), torch.arange(total))
        record = accumulator.finish()
        for name in ("waad", "mean_distance"):
            out[name].append(record.row[name][0].numpy())
        out["fai"].append(record.key["fai"][0].numpy())
    return {name: np.stack(values) for name, values in out.items()}


def reference_rhythm(maps: np.ndarray, local, global_, prompt: int, waad_window=10, fai_window=(10, 100)):
    """Spec §4 written out literally on the head-averaged maps (no seam)."""
    total = maps.shape[-1]
    local_map = maps[local].mean(0)
    global_map = maps[global_].mean(0)
    response = range(prompt, total)
    waad = np.array([sum(local_map[t, s] * min(t - s, waad_window) for s in range(t + 1)) for t in response])
    fai = []
    low, high = fai_window
    for s in response:
        targets = [t for t in response if s + low <= t <= min(total - 1, s + high)]
        fai.append(np.mean([global_map[t, s] for t in targets]) if targets else np.nan)
    distance = np.array(
        [
            [
                np.mean([(maps[layer, h, t, : t + 1] * (t - np.arange(t + 1))).sum() for t in response])
                for h in range(maps.shape[1])
            ]
            for layer in range(maps.shape[0])
        ]
    )
    return {"waad": waad, "fai": np.array(fai), "distance": distance}
