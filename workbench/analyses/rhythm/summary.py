"""From per-response rhythms to the tables a user reads: head groups, token table, statistics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.analyses.heads import make_head_table
from workbench.analyses.rhythm.credit import RhythmParams
from workbench.analyses.rhythm.detect import top_fraction
from workbench.analyses.rhythm.pipeline import ResponseRhythm
from workbench.analyses.rhythm.statistics import coupling, entropy_lift

TOKEN_COLUMNS = (
    "problem",
    "position",
    "token",
    "waad",
    "fai",
    "is_preplan",
    "is_anchor",
    "credit_local",
    "credit_global",
    "credit_coupled",
)


def token_table(responses: Sequence[ResponseRhythm]) -> pd.DataFrame:
    """One row per response token; the issue's columns first, then detail columns."""
    frame = pd.concat([r.frame() for r in responses], ignore_index=True)
    return frame[list(TOKEN_COLUMNS) + [c for c in frame.columns if c not in TOKEN_COLUMNS]]


def head_group_table(
    responses: Sequence[ResponseRhythm], layers: Sequence[int], params: RhythmParams
) -> pd.DataFrame:
    """Per head: mean backward distance over responses (score) and how often it was local / global."""
    distance = np.stack([r.distance for r in responses])  # (response, layer, head)
    local = np.stack([r.local for r in responses]).mean(0)
    global_ = np.stack([r.global_ for r in responses]).mean(0)
    rows = []
    for li, layer in enumerate(layers):
        for head in range(distance.shape[-1]):
            group = "local" if local[li, head] > 0.5 else "global" if global_[li, head] > 0.5 else "middle"
            rows.append(
                {
                    "layer": int(layer),
                    "head": int(head),
                    "mean_distance": float(distance[:, li, head].mean()),
                    "local_fraction": float(local[li, head]),
                    "global_fraction": float(global_[li, head]),
                    "group": group,
                }
            )
    params_dict = {"group_fraction": params.group_fraction, "layers": list(layers)}
    return make_head_table(rows, "rhythm-distance", params_dict, score="mean_distance")


def _group_summary(responses: Sequence[ResponseRhythm], table: pd.DataFrame) -> dict:
    local_d = np.concatenate([r.distance[r.local] for r in responses])
    global_d = np.concatenate([r.distance[r.global_] for r in responses])
    middle_d = np.concatenate([r.distance[~(r.local | r.global_)] for r in responses])
    local_sets = [frozenset(zip(*np.nonzero(r.local), strict=True)) for r in responses]
    global_sets = [frozenset(zip(*np.nonzero(r.global_), strict=True)) for r in responses]

    def stability(sets):
        scores = [len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1 :]]
        return float(np.mean(scores)) if scores else float("nan")

    def listed(column):
        chosen = table[table[column] > 0.5].sort_values(column, ascending=False)
        return [[int(r["layer"]), int(r["head"]), round(float(r[column]), 3)] for _, r in chosen.iterrows()]

    return {
        "distance_local": {"mean": float(local_d.mean()), "max": float(local_d.max())},
        "distance_middle": {"mean": float(middle_d.mean())} if middle_d.size else {},
        "distance_global": {"mean": float(global_d.mean()), "min": float(global_d.min())},
        "distance_all_quantiles": {
            str(q): float(np.quantile(np.concatenate([r.distance.ravel() for r in responses]), q))
            for q in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
        },
        "stability_local": stability(local_sets),
        "stability_global": stability(global_sets),
        "local_heads": listed("local_fraction"),
        "global_heads": listed("global_fraction"),
    }


def summarize(
    responses: Sequence[ResponseRhythm],
    *,
    layers: Sequence[int],
    params: RhythmParams,
    shuffles: int = 1000,
    seed: int = 0,
    coupling_fractions: Sequence[float] = (0.1, 0.2, 0.4),
    lags: Sequence[int] = (0, 1, 3),
    perturbation: dict | None = None,
    heads: pd.DataFrame | None = None,
) -> dict:
    """The summary.json content: head groups, entropy lift, FAI/WAAD coupling, perturbation; all with baselines.

    Entropy keys: ``*_producing`` uses the entropy of the distribution that produced token t (logits at
    t - 1, the policy entropy RL credit would see); ``*_next`` the distribution at t (predicting t + 1).
    ``preplan`` = top |Delta WAAD| tokens, ``waad_top`` = top WAAD tokens, ``anchor`` = top FAI tokens.
    Coupling rows: FAI peaks (top ``peak_fraction`` of FAI) with a WAAD peak (top ``peak_fraction`` of
    |Delta WAAD|) at most ``lag`` tokens before or at them, vs the WAAD peaks shuffled within each response.
    """
    heads = heads if heads is not None else head_group_table(responses, layers, params)
    entropy_token = [r.entropy for r in responses]
    entropy_next = [r.entropy_next for r in responses]
    preplan = [r.credit["is_preplan"] for r in responses]
    waad_top = [top_fraction(r.waad, params.preplan_fraction) for r in responses]
    anchors = [r.credit["is_anchor"] for r in responses]
    entropy = {
        "preplan_producing": entropy_lift(entropy_token, preplan, shuffles=shuffles, seed=seed),
        "preplan_next": entropy_lift(entropy_next, preplan, shuffles=shuffles, seed=seed),
        "waad_top_producing": entropy_lift(entropy_token, waad_top, shuffles=shuffles, seed=seed),
        "waad_top_next": entropy_lift(entropy_next, waad_top, shuffles=shuffles, seed=seed),
        "anchor_producing": entropy_lift(entropy_token, anchors, shuffles=shuffles, seed=seed),
    }
    rows = []
    for fraction in coupling_fractions:
        waad_peaks = [top_fraction(r.delta, fraction) for r in responses]
        fai_peaks = [top_fraction(r.fai, fraction) for r in responses]
        valid = [np.isfinite(r.delta) for r in responses]
        for lag in lags:
            result = coupling(fai_peaks, waad_peaks, valid, lag=lag, shuffles=shuffles, seed=seed)
            rows.append({"peak_fraction": fraction, **result})
    correct = [r.correct for r in responses if r.correct is not None]
    lengths = [r.length for r in responses]
    return {
        "responses": len(responses),
        "response_tokens": {
            "mean": float(np.mean(lengths)),
            "min": int(min(lengths)),
            "max": int(max(lengths)),
        },
        "accuracy": (sum(correct) / len(correct)) if correct else None,
        "layers": list(layers),
        "params": params.to_dict(),
        "head_groups": _group_summary(responses, heads),
        "token_sets": {
            "preplan_fraction_of_tokens": float(np.mean(np.concatenate(preplan))),
            "anchor_fraction_of_tokens": float(np.mean(np.concatenate(anchors))),
            "dominated_anchors": int(sum(r.credit["is_dominated"].sum() for r in responses)),
            "anchors": int(sum(a.sum() for a in anchors)),
        },
        "entropy": entropy,
        "coupling": rows,
        "perturbation": perturbation,
    }


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if np.isfinite(value) else "nan"
    return str(value)


def markdown_tables(summary: dict) -> str:
    """The summary as Markdown tables (each statistic next to its baseline)."""
    lines = [
        f"responses: {summary['responses']}, tokens per response: {summary['response_tokens']}, "
        f"accuracy: {_fmt(summary.get('accuracy'))}, layers: {summary['layers']}",
        "",
        "| head group | mean d | range |",
        "|---|---|---|",
    ]
    groups = summary["head_groups"]
    lines.append(
        f"| local (bottom 30%) | {_fmt(groups['distance_local']['mean'], 2)} | max {_fmt(groups['distance_local']['max'], 2)} |"
    )
    if groups.get("distance_middle"):
        lines.append(f"| middle | {_fmt(groups['distance_middle']['mean'], 2)} | |")
    lines.append(
        f"| global (top 30%) | {_fmt(groups['distance_global']['mean'], 2)} | min {_fmt(groups['distance_global']['min'], 2)} |"
    )
    lines.append(
        f"\ngroup stability across responses (mean pairwise Jaccard): local {_fmt(groups['stability_local'])}, "
        f"global {_fmt(groups['stability_global'])}\n"
    )
    lines += [
        "| entropy at | mean at tokens | mean over all | lift | random same-size subsets | p | tokens (peaks/all) | responses higher |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["entropy"].items():
        lines.append(
            f"| {name} | {_fmt(row['mean_at_peaks'])} | {_fmt(row['mean_all'])} | {_fmt(100 * row['lift'], 1)}% | "
            f"{_fmt(row['random_subset_mean'])} | {_fmt(row['p_value'], 4)} | {row['peak_tokens']}/{row['tokens']} | "
            f"{row['responses_with_higher_peak_entropy']}/{row['responses']} |"
        )
    lines += [
        "",
        "| peak fraction | lag | FAI peaks after/at a WAAD peak | shuffled baseline (mean ± sd) | p | FAI peaks |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["coupling"]:
        lines.append(
            f"| {row['peak_fraction']} | {row['lag']} | {_fmt(100 * row['rate'], 1)}% | "
            f"{_fmt(100 * row['shuffled_mean'], 1)}% ± {_fmt(100 * row['shuffled_std'], 1)} | {_fmt(row['p_value'], 4)} | {row['anchors']} |"
        )
    perturbation = summary.get("perturbation")
    if perturbation and perturbation.get("pairs"):
        lines += [
            "",
            "| perturbation | Jaccard high-FAI swap | Jaccard low-FAI swap | high moved more | low moved more | ties | sign test p |",
            "|---|---|---|---|---|---|---|",
            f"| {perturbation['pairs']} pairs, {perturbation['continuation']} tokens | {_fmt(perturbation['jaccard_high_fai'])} | "
            f"{_fmt(perturbation['jaccard_low_fai'])} | {perturbation['high_moved_more']} | {perturbation['low_moved_more']} | "
            f"{perturbation['ties']} | {_fmt(perturbation['sign_test_p'], 4)} |",
        ]
    return "\n".join(lines)
