"""IsSameObject probes on frozen patch embeddings (Li et al. 2025, algorithms.md §6), with honest pair sampling.

Pairs are sampled per scene and per Chebyshev-distance bin (1, 2-3, 4-6, 7+ patches) with equal numbers of
same- and different-object pairs in each bin, so spatial proximity alone scores 0.5. The *same-class*
stratum holds pairs of two object patches whose objects share a shape class: positives are the same
instance, negatives a different instance of the same class. A pointwise class read-out cannot separate
them, so accuracy above 0.5 there is the binding-specific signal. Background (instance 0) counts as an id.

Probes (phi is a logit; features are standardised with train statistics):
    linear      w.x_i + w.x_j + b             (additive: cannot model the pair; a pointwise baseline)
    diagonal    w.(x_i * x_j) + b
    quadratic   x_i^T W_sym x_j / sqrt(d) + b,  W_sym = (W + W^T) / 2
    lowrank     quadratic with W = (A^T B + B^T A) / 2, A, B in R^{r x d}
Baselines: cosine similarity (threshold fit on train pairs), and "pointwise-class" (a linear patch
classifier; pair score = sum_c p_i(c) p_j(c), predicted same iff the argmax classes agree).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

FIELDS = ("scene", "i", "j", "label", "bin", "same_class", "hard")
DISTANCE_BINS = ((1, 1), (2, 3), (4, 6), (7, 10**6))
PROBES = ("linear", "diagonal", "quadratic", "lowrank")


@dataclass
class Pairs:
    """Index arrays of sampled pairs: scene, i, j (patch indices), label (1 = same object), bin, same_class,
    hard (appearance disagrees with identity: same object but different part textures, or different objects
    with the same texture)."""

    scene: np.ndarray
    i: np.ndarray
    j: np.ndarray
    label: np.ndarray
    bin: np.ndarray
    same_class: np.ndarray  # bool: pair belongs to the same-class stratum
    hard: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, mask: np.ndarray) -> Pairs:
        return Pairs(*(getattr(self, f)[mask] for f in FIELDS))


def _balanced(rng, candidates, labels, bins, cap):
    """Equal positives and negatives per distance bin (at most ``cap`` of each)."""
    keep = []
    for b in range(len(DISTANCE_BINS)):
        positive = candidates[(bins == b) & labels]
        negative = candidates[(bins == b) & ~labels]
        n = min(len(positive), len(negative), cap)
        if n:
            keep.append(rng.choice(positive, n, replace=False))
            keep.append(rng.choice(negative, n, replace=False))
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


def sample_pairs(
    labels: np.ndarray,
    classes: np.ndarray,
    grid: int,
    seed: int = 0,
    cap_per_bin: int = 40,
    texture: np.ndarray | None = None,
) -> Pairs:
    """Distance-matched pairs from patch labels (scenes, N) (-1 = mixed) and object classes (scenes, O).

    ``classes[s, k - 1]`` is the shape class of instance k; ``texture`` (scenes, N) the patches' texture ids (for
    the ``hard`` flag). Returns the main set (all labelled patches) and the
    same-class stratum, concatenated (``same_class`` marks the stratum).
    """
    rng = np.random.default_rng(seed)
    n = labels.shape[1]
    rows, cols = np.triu_indices(n, k=1)
    distance = np.maximum(np.abs(rows // grid - cols // grid), np.abs(rows % grid - cols % grid))
    bins = np.full(len(rows), -1)
    for b, (low, high) in enumerate(DISTANCE_BINS):
        bins[(distance >= low) & (distance <= high)] = b
    out = {key: [] for key in FIELDS}
    texture = np.zeros_like(labels) if texture is None else texture
    for s in range(labels.shape[0]):
        a, b = labels[s, rows], labels[s, cols]
        valid = (a >= 0) & (b >= 0)
        same = a == b
        patch_class = np.where(labels[s] > 0, classes[s, np.clip(labels[s] - 1, 0, None)], -1)
        ca, cb = patch_class[rows], patch_class[cols]
        stratum = valid & (a > 0) & (b > 0) & (ca == cb) & (ca >= 0)
        for is_stratum, pool in ((False, valid), (True, stratum)):
            candidates = np.flatnonzero(pool)
            chosen = _balanced(rng, candidates, same[candidates], bins[candidates], cap_per_bin)
            out["scene"].append(np.full(len(chosen), s))
            out["i"].append(rows[chosen])
            out["j"].append(cols[chosen])
            out["label"].append(same[chosen])
            out["bin"].append(bins[chosen])
            out["same_class"].append(np.full(len(chosen), is_stratum))
            same_texture = texture[s, rows[chosen]] == texture[s, cols[chosen]]
            out["hard"].append(same[chosen] != same_texture)
    return Pairs(*(np.concatenate(out[k]) for k in FIELDS))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); nan when one class is missing."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        stop = start
        while stop + 1 < len(scores) and sorted_scores[stop + 1] == sorted_scores[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class PairProbe(nn.Module):
    def __init__(self, kind: str, dim: int, rank: int = 16):
        super().__init__()
        if kind not in PROBES:
            raise ValueError(f"unknown probe {kind!r}; choose from {PROBES}")
        self.kind, self.dim = kind, dim
        self.bias = nn.Parameter(torch.zeros(()))
        if kind in ("linear", "diagonal"):
            self.w = nn.Parameter(torch.zeros(dim))
        elif kind == "quadratic":
            self.W = nn.Parameter(torch.randn(dim, dim) * 0.01)
        else:
            self.A = nn.Parameter(torch.randn(rank, dim) / math.sqrt(dim))
            self.B = nn.Parameter(torch.randn(rank, dim) / math.sqrt(dim))

    def matrix(self) -> torch.Tensor:
        """W_sym (d, d) of a quadratic-type probe (in standardised coordinates)."""
        if self.kind == "quadratic":
            return (self.W + self.W.T) / 2 / math.sqrt(self.dim)
        if self.kind == "lowrank":
            return (self.A.T @ self.B + self.B.T @ self.A) / 2 / math.sqrt(self.dim)
        raise ValueError(f"a {self.kind} probe has no matrix")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return (x + y) @ self.w + self.bias
        if self.kind == "diagonal":
            return (x * y) @ self.w + self.bias
        return ((x @ self.matrix()) * y).sum(-1) + self.bias


@dataclass
class Standardizer:
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, features: torch.Tensor) -> Standardizer:
        flat = features.reshape(-1, features.shape[-1]).float()
        return cls(flat.mean(0), flat.std(0).clamp_min(1e-4))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def gather(features: torch.Tensor, pairs: Pairs) -> tuple[torch.Tensor, torch.Tensor]:
    scene = torch.from_numpy(pairs.scene)
    return features[scene, torch.from_numpy(pairs.i)], features[scene, torch.from_numpy(pairs.j)]


def train_probe(
    kind, x, y, label, val=None, epochs=20, lr=1e-3, weight_decay=0.01, batch=2048, seed=0, rank=16
):
    """BCE on (x, y, label) with AdamW; keeps the epoch with the best validation loss when ``val`` is given."""
    torch.manual_seed(seed)
    probe = PairProbe(kind, x.shape[-1], rank)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    target = torch.as_tensor(label, dtype=torch.float32)
    best, best_state, patience = float("inf"), None, 0
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(target), generator=generator)
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            loss = F.binary_cross_entropy_with_logits(probe(x[index], y[index]), target[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if val is not None:
            with torch.no_grad():
                vx, vy, vlabel = val
                val_loss = float(
                    F.binary_cross_entropy_with_logits(
                        probe(vx, vy), torch.as_tensor(vlabel, dtype=torch.float32)
                    )
                )
            if val_loss < best - 1e-4:
                best, best_state, patience = (
                    val_loss,
                    {k: v.clone() for k, v in probe.state_dict().items()},
                    0,
                )
            else:
                patience += 1
                if patience >= 3:
                    break
    if best_state is not None:
        probe.load_state_dict(best_state)
    return probe.eval()


def pair_metrics(scores: np.ndarray, predicted: np.ndarray, pairs: Pairs) -> dict:
    """accuracy/auroc on the main (distance-matched) set and on the same-class stratum, accuracy on the hard
    same-class pairs (appearance misleads), and per-bin accuracy on the main set."""
    main, stratum = ~pairs.same_class, pairs.same_class
    hard = stratum & pairs.hard
    label = pairs.label.astype(bool)
    out = {
        "accuracy": float((predicted[main] == label[main]).mean()) if main.any() else float("nan"),
        "auroc": auroc(scores[main], label[main]),
        "same_class_accuracy": float((predicted[stratum] == label[stratum]).mean())
        if stratum.any()
        else float("nan"),
        "same_class_auroc": auroc(scores[stratum], label[stratum]),
        "hard_accuracy": float((predicted[hard] == label[hard]).mean()) if hard.any() else float("nan"),
        "n_pairs": int(main.sum()),
        "n_same_class": int(stratum.sum()),
        "n_hard": int(hard.sum()),
    }
    for b, (low, high) in enumerate(DISTANCE_BINS):
        chosen = main & (pairs.bin == b)
        name = (
            f"accuracy_d{low}"
            if low == high
            else (f"accuracy_d{low}_{high}" if high < 10**5 else f"accuracy_d{low}plus")
        )
        out[name] = float((predicted[chosen] == label[chosen]).mean()) if chosen.any() else float("nan")
    return out


def scene_counts(predicted: np.ndarray, pairs: Pairs) -> pd.DataFrame:
    """Same-class (different-instance) pairs per test scene: how many, how many predicted right. Pairs
    cluster in scenes, so an interval for a same-class accuracy resamples scenes, not pairs."""
    stratum = pairs.same_class
    right = (predicted[stratum] == pairs.label.astype(bool)[stratum]).astype(np.int64)
    scenes = pairs.scene[stratum]
    order = np.unique(scenes)
    return pd.DataFrame(
        {
            "scene": order.astype(np.int64),
            "n_same_class": np.bincount(np.searchsorted(order, scenes), minlength=len(order)),
            "correct_same_class": np.bincount(np.searchsorted(order, scenes), weights=right, minlength=len(order)).astype(np.int64),
        }
    )


def cosine_scores(features: torch.Tensor, pairs: Pairs) -> np.ndarray:
    x, y = gather(features, pairs)
    return F.cosine_similarity(x.float(), y.float(), dim=-1).numpy()


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    candidates = np.quantile(scores, np.linspace(0.01, 0.99, 99))
    accuracy = [((scores > t) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def class_probe(
    features: torch.Tensor, patch_class: np.ndarray, epochs: int = 30, seed: int = 0
) -> nn.Module:
    """Linear patch classifier (object classes + background as the last class) on labelled patches."""
    torch.manual_seed(seed)
    keep = torch.from_numpy(patch_class >= 0)
    x, target = features[keep].float(), torch.from_numpy(patch_class)[keep].long()
    classes = int(patch_class.max()) + 1
    model = nn.Linear(x.shape[-1], classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(target), generator=generator)
        for start in range(0, len(order), 4096):
            index = order[start : start + 4096]
            loss = F.cross_entropy(model(x[index]), target[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def patch_classes(labels: np.ndarray, classes: np.ndarray, background_class: int) -> np.ndarray:
    """(scenes, N) class of each labelled patch: object shape class, ``background_class`` for id 0, -1 if mixed."""
    object_class = np.take_along_axis(classes, np.clip(labels - 1, 0, None), axis=1)
    out = np.where(labels > 0, object_class, background_class)
    return np.where(labels < 0, -1, out)
