"""Pair sampling is distance-matched; the quadratic probe reads pair identity a pointwise probe cannot."""

import numpy as np
import torch

from workbench.analyses.binding import probes as P
from workbench.analyses.binding.subspace import binding_basis, project_out, random_basis


def _scenes(count=20, grid=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=(count, grid * grid))
    labels[:, :3] = -1  # mixed patches are never paired
    classes = np.tile(np.array([[0, 0, 1, 5, 5]]), (count, 1))  # ids 1, 2 share class 0
    texture = rng.integers(0, 2, size=(count, grid * grid))
    return labels, classes, texture


def test_sample_pairs_is_balanced_per_distance_bin():
    labels, classes, texture = _scenes()
    pairs = P.sample_pairs(labels, classes, 6, seed=0, cap_per_bin=10, texture=texture)
    assert (pairs.i < pairs.j).all() and (pairs.i >= 3).all()
    for stratum in (False, True):
        for s in range(20):
            for b in range(len(P.DISTANCE_BINS)):
                chosen = (pairs.scene == s) & (pairs.bin == b) & (pairs.same_class == stratum)
                assert pairs.label[chosen].sum() * 2 == chosen.sum()
    stratum = pairs.subset(pairs.same_class)
    li, lj = labels[stratum.scene, stratum.i], labels[stratum.scene, stratum.j]
    assert ((li > 0) & (lj > 0)).all()
    assert (classes[stratum.scene, li - 1] == classes[stratum.scene, lj - 1]).all()
    assert (stratum.label == (li == lj)).all()
    tex_same = texture[stratum.scene, stratum.i] == texture[stratum.scene, stratum.j]
    assert (stratum.hard == (stratum.label != tex_same)).all()


def test_auroc_matches_rank_definition():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=200).round(1), rng.random(200) < 0.4
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in scores[labels] for n in scores[~labels]])
    assert abs(P.auroc(scores, labels) - brute) < 1e-12
    assert P.auroc(np.arange(4), np.array([0, 0, 1, 1], bool)) == 1.0


def _identity_task(n=3000, dim=24, code_dim=4, seed=0):
    """Patches = object code in a fixed 4-d subspace + noise; pairs are same object or not."""
    world = np.random.default_rng(123)
    basis = np.linalg.qr(world.normal(size=(dim, code_dim)))[0]
    codes = world.normal(size=(50, code_dim)) * 2
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 50, n), rng.integers(0, 50, n)
    same = rng.random(n) < 0.5
    b = np.where(same, a, b)
    label = a == b
    noise = lambda: rng.normal(size=(n, dim)) * 0.3  # noqa: E731
    x = torch.tensor(codes[a] @ basis.T + noise(), dtype=torch.float32)
    y = torch.tensor(codes[b] @ basis.T + noise(), dtype=torch.float32)
    return x, y, label, basis


def test_quadratic_probe_beats_pointwise_and_subspace_ablation_removes_it():
    x, y, label, basis = _identity_task()
    tx, ty, tlabel, _ = _identity_task(seed=1)
    features = torch.cat([x, y])
    standardizer = P.Standardizer.fit(features)
    zx, zy, ztx, zty = (standardizer(t) for t in (x, y, tx, ty))
    accuracy = {}
    for kind in ("linear", "quadratic", "lowrank", "diagonal"):
        probe = P.train_probe(kind, zx, zy, label, epochs=40, lr=1e-2, seed=0, rank=8)
        with torch.no_grad():
            accuracy[kind] = float(((probe(ztx, zty) > 0).numpy() == tlabel).mean())
        if kind == "quadratic":
            quadratic = probe
    assert accuracy["linear"] < 0.6  # additive: cannot tell whether a pair matches
    assert accuracy["quadratic"] > 0.75 and accuracy["lowrank"] > 0.75  # a bilinear form reaches ~0.8 here
    # the binding subspace is the code subspace; ablating it (not a random one) destroys the probe
    found = binding_basis(quadratic, 4)
    assert torch.allclose(found.T @ found, torch.eye(4), atol=1e-4)

    def ablated_accuracy(subspace):
        ax, ay = project_out(tx, subspace, standardizer), project_out(ty, subspace, standardizer)
        with torch.no_grad():
            return float(((quadratic(standardizer(ax), standardizer(ay)) > 0).numpy() == tlabel).mean())

    assert ablated_accuracy(found) < 0.6
    assert ablated_accuracy(random_basis(24, 4, seed=0)) > accuracy["quadratic"] - 0.08
    z = standardizer(project_out(tx, found, standardizer))
    assert (z @ found).abs().max() < 1e-4
