"""Object binding in a ViT: IsSameObject probes per layer, baselines, binding subspace ablation, head AUROC.

``run_binding(model, BindingConfig(...))`` renders train and test scenes (disjoint seeds), caches patch
embeddings per layer (hidden-state index 0 = embeddings, l = output of block l), trains the probes of
``probes.py`` on train scenes (the last 15 % of them for early stopping and layer selection), and
evaluates on test scenes. Baselines: cosine, pointwise class read-out, the same architecture with random
weights (quadratic + cosine at every layer) and raw patch pixels (layer -1). The best layer is chosen by
the quadratic probe's *validation* same-class accuracy.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.analyses.binding import probes as P
from workbench.analyses.binding.scenes import (
    GENERATOR_VERSION,
    NUM_CLASSES,
    make_scene_set,
    patch_labels,
    patch_mode,
    scene_config_for,
)
from workbench.analyses.binding.subspace import ablation_edit, binding_basis, project_out, random_basis
from workbench.runners.vision import VisionModel

TRAIN_SEED, TEST_SEED = 1000, 2000


@dataclass(frozen=True)
class BindingConfig:
    scenes: int = 120  # train scenes (test scenes: scenes // 2, at least 8)
    layers: tuple[int, ...] | None = None  # hidden-state indices; None = all
    probes: tuple[str, ...] = P.PROBES
    seed: int = 0
    cap_per_bin: int = 30
    purity: float = 0.8
    epochs: int = 15
    random_baseline: bool = True
    pixel_baseline: bool = True
    head_scenes: int = 16  # test scenes whose full attention maps feed the per-head AUROC (0 = skip)
    ablation_ranks: tuple[int, ...] = (4, 16, 64)
    batch: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BindingResult:
    probes: pd.DataFrame
    heads: pd.DataFrame
    ablation: pd.DataFrame
    summary: dict = field(default_factory=dict)
    # same-class pairs per (layer, probe, test scene): n and correct, for intervals that resample scenes
    scenes: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class _Split:
    labels: np.ndarray  # (S, N)
    classes: np.ndarray  # (S, O)
    pairs: P.Pairs
    images: torch.Tensor


def _split(count, seed, config, model, cap, purity) -> _Split:
    scenes = make_scene_set(count, seed, config)
    labels, _ = patch_labels(scenes.instance, model.patch_size, purity)
    labels, classes = labels.numpy(), scenes.classes.numpy()
    texture = patch_mode(scenes.texture, model.patch_size).numpy()
    pairs = P.sample_pairs(labels, classes, model.grid, seed=seed, cap_per_bin=cap, texture=texture)
    return _Split(labels, classes, pairs, scenes.images)


def extract(
    model: VisionModel, images: torch.Tensor, layers, batch: int = 8, residual_edits=(), desc=None
) -> dict:
    """layer -> (scenes, patches, d) fp16 patch tokens (cls dropped)."""
    chunks: dict[int, list] = {layer: [] for layer in layers}
    for start in tqdm(range(0, len(images), batch), desc=desc or f"{model.name} features", leave=False):
        run = model.run(images[start : start + batch], layers=layers, residual_edits=residual_edits)
        for index, layer in enumerate(run.layers):
            chunks[layer].append(run.hidden[:, index, 1:].half())
    return {layer: torch.cat(parts) for layer, parts in chunks.items()}


def pixel_features(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(scenes, patches, 3 * patch * patch) raw patch pixels, row-major like the tokens."""
    return torch.nn.functional.unfold(images.float(), patch, stride=patch).transpose(1, 2).half()


class _LayerProbes:
    """Probes trained at one layer, kept for the ablation step."""

    def __init__(self):
        self.quadratic: dict[int, P.PairProbe] = {}
        self.standardizer: dict[int, P.Standardizer] = {}


def _scene_rows(scenes: list | None, predicted, pairs, layer: int, probe: str) -> None:
    if scenes is not None:
        scenes.append(P.scene_counts(predicted, pairs).assign(layer=layer, probe=probe))


def _evaluate_layer(
    features_train, features_test, train, test, val_mask, kinds, config, tag, layer, kept=None, scenes=None
):
    rows = []
    standardizer = P.Standardizer.fit(features_train)
    z_train, z_test = standardizer(features_train), standardizer(features_test)
    train_pairs, val_pairs = train.pairs.subset(~val_mask), train.pairs.subset(val_mask)
    x, y = P.gather(z_train, train_pairs)
    vx, vy = P.gather(z_train, val_pairs)
    tx, ty = P.gather(z_test, test.pairs)
    for kind in kinds:
        probe = P.train_probe(
            kind,
            x,
            y,
            train_pairs.label,
            val=(vx, vy, val_pairs.label),
            epochs=config.epochs,
            seed=config.seed,
        )
        with torch.no_grad():
            scores = probe(tx, ty).numpy()
            val_scores = probe(vx, vy).numpy()
        row = {"layer": layer, "probe": f"{tag}{kind}", **P.pair_metrics(scores, scores > 0, test.pairs)}
        _scene_rows(scenes, scores > 0, test.pairs, layer, f"{tag}{kind}")
        val_metrics = P.pair_metrics(val_scores, val_scores > 0, val_pairs)
        row["val_accuracy"] = val_metrics["accuracy"]
        row["val_same_class_accuracy"] = val_metrics["same_class_accuracy"]
        rows.append(row)
        if kept is not None and kind == "quadratic":
            kept.quadratic[layer], kept.standardizer[layer] = probe, standardizer
    cos_train = P.cosine_scores(features_train, train_pairs)
    threshold = P.best_threshold(cos_train, train_pairs.label.astype(bool))
    cos_test = P.cosine_scores(features_test, test.pairs)
    _scene_rows(scenes, cos_test > threshold, test.pairs, layer, f"{tag}cosine")
    rows.append(
        {
            "layer": layer,
            "probe": f"{tag}cosine",
            **P.pair_metrics(cos_test, cos_test > threshold, test.pairs),
        }
    )
    return rows


def _pointwise_row(features_train, features_test, train, test, layer, config, scenes=None):
    background = NUM_CLASSES
    standardizer = P.Standardizer.fit(features_train)
    classifier = P.class_probe(
        standardizer(features_train),
        P.patch_classes(train.labels, train.classes, background),
        seed=config.seed,
    )
    with torch.no_grad():
        probabilities = torch.softmax(classifier(standardizer(features_test)), dim=-1)
    pi, pj = P.gather(probabilities, test.pairs)
    scores = (pi * pj).sum(-1).numpy()
    predicted = (pi.argmax(-1) == pj.argmax(-1)).numpy()
    _scene_rows(scenes, predicted, test.pairs, layer, "pointwise-class")
    return {"layer": layer, "probe": "pointwise-class", **P.pair_metrics(scores, predicted, test.pairs)}


def head_auroc(
    model: VisionModel, images: torch.Tensor, pairs: P.Pairs, layers=None, batch: int = 4
) -> pd.DataFrame:
    """Per (layer, head): AUROC of symmetrised attention (A_ij + A_ji) / 2 for same vs different object."""
    layers = list(range(model.shape.num_layers)) if layers is None else list(layers)
    scores = {(layer, head): [] for layer in layers for head in range(model.shape.num_heads)}
    chosen = []
    for start in tqdm(range(0, len(images), batch), desc=f"{model.name} attention", leave=False):
        maps = model.attention_maps(images[start : start + batch], layers=layers)  # (b, layer, head, T, T)
        mask = (pairs.scene >= start) & (pairs.scene < start + len(maps))
        sub = pairs.subset(mask)
        chosen.append(sub)
        s, i, j = (
            torch.from_numpy(sub.scene - start),
            torch.from_numpy(sub.i + 1),
            torch.from_numpy(sub.j + 1),
        )
        for li, layer in enumerate(layers):
            for head in range(model.shape.num_heads):
                a = maps[:, li, head]
                scores[(layer, head)].append(((a[s, i, j] + a[s, j, i]) / 2).numpy())
    picked = P.Pairs(*(np.concatenate([getattr(c, f) for c in chosen]) for f in P.FIELDS))
    label, stratum = picked.label.astype(bool), picked.same_class
    rows = []
    for (layer, head), parts in scores.items():
        values = np.concatenate(parts)
        rows.append(
            {
                "layer": layer,
                "head": head,
                "binding_auroc": P.auroc(values[~stratum], label[~stratum]),
                "same_class_auroc": P.auroc(values[stratum], label[stratum]),
            }
        )
    from workbench.analyses.heads import make_head_table

    return make_head_table(
        rows, "binding-attention-auroc", {"scenes": int(len(images))}, score="binding_auroc"
    )


def run_binding(model: VisionModel, config: BindingConfig | None = None, progress=print) -> BindingResult:
    config = config or BindingConfig()
    started = time.time()
    scene_config = scene_config_for(model.image_size)
    layers = list(range(model.shape.num_layers + 1)) if config.layers is None else list(config.layers)
    progress(
        f"rendering {config.scenes} train + {max(8, config.scenes // 2)} test scenes at {model.image_size} px"
    )
    train = _split(
        config.scenes, TRAIN_SEED + config.seed, scene_config, model, config.cap_per_bin, config.purity
    )
    test = _split(
        max(8, config.scenes // 2),
        TEST_SEED + config.seed,
        scene_config,
        model,
        config.cap_per_bin,
        config.purity,
    )
    n_val = max(1, int(round(0.15 * config.scenes)))
    val_mask = train.pairs.scene >= config.scenes - n_val
    progress(
        f"pairs: {len(train.pairs)} train, {len(test.pairs)} test ({int(test.pairs.same_class.sum())} same-class)"
    )

    rows, kept, scenes = [], _LayerProbes(), []
    feats_train = extract(model, train.images, layers, config.batch)
    feats_test = extract(model, test.images, layers, config.batch)
    for layer in tqdm(layers, desc="probes", leave=False):
        rows += _evaluate_layer(
            feats_train[layer],
            feats_test[layer],
            train,
            test,
            val_mask,
            config.probes,
            config,
            "",
            layer,
            kept,
            scenes,
        )
        rows.append(_pointwise_row(feats_train[layer], feats_test[layer], train, test, layer, config, scenes))
        progress(
            f"layer {layer}: "
            + ", ".join(f"{r['probe']} {r['same_class_accuracy']:.3f}" for r in rows if r["layer"] == layer)
        )
    if config.random_baseline:
        random_model = model.random_init(config.seed)
        r_train = extract(random_model, train.images, layers, config.batch, desc="random-init features")
        r_test = extract(random_model, test.images, layers, config.batch, desc="random-init features")
        for layer in tqdm(layers, desc="random-init probes", leave=False):
            rows += _evaluate_layer(
                r_train[layer],
                r_test[layer],
                train,
                test,
                val_mask,
                ("quadratic",),
                config,
                "random-init:",
                layer,
                scenes=scenes,
            )
        del r_train, r_test
    if config.pixel_baseline:
        p_train, p_test = (
            pixel_features(train.images, model.patch_size),
            pixel_features(test.images, model.patch_size),
        )
        rows += _evaluate_layer(
            p_train, p_test, train, test, val_mask, ("quadratic",), config, "pixels:", -1, scenes=scenes
        )
    probes_table = pd.DataFrame(rows)

    quadratic = probes_table[probes_table.probe == "quadratic"]
    best_layer = None
    if len(quadratic):
        column = (
            "val_same_class_accuracy" if quadratic.val_same_class_accuracy.notna().any() else "val_accuracy"
        )
        best_layer = int(quadratic.loc[quadratic[column].idxmax(), "layer"])
    ablation_rows = []
    if best_layer is not None and config.ablation_ranks:
        ablation_rows = _ablation(model, feats_test, test, kept, best_layer, layers, config, progress)
    heads = pd.DataFrame(columns=["layer", "head", "binding_auroc", "same_class_auroc", "score"])
    if config.head_scenes:
        count = min(config.head_scenes, len(test.images))
        heads = head_auroc(model, test.images[:count], test.pairs.subset(test.pairs.scene < count))
    summary = {
        "model": model.name,
        "config": config.to_dict(),
        "scene_config": scene_config.to_dict(),
        "generator_version": GENERATOR_VERSION,
        "best_layer": best_layer,
        "train_pairs": len(train.pairs),
        "test_pairs": int((~test.pairs.same_class).sum()),
        "test_same_class_pairs": int(test.pairs.same_class.sum()),
        "seconds": round(time.time() - started, 1),
    }
    columns = ["layer", "probe", "scene", "n_same_class", "correct_same_class"]
    scene_table = pd.concat(scenes, ignore_index=True)[columns] if scenes else pd.DataFrame(columns=columns)
    return BindingResult(probes_table, heads, pd.DataFrame(ablation_rows), summary, scene_table)


def _ablation(model, feats_test, test, kept, best_layer, layers, config, progress):
    """Project the binding (or a random) subspace out at ``best_layer``; re-run; score the clean probes."""
    rows = []
    probe, standardizer = kept.quadratic[best_layer], kept.standardizer[best_layer]
    later = [layer for layer in layers if layer > best_layer and layer in kept.quadratic]
    downstream = sorted({later[min(1, len(later) - 1)], later[-1]}) if later else []
    dim = feats_test[best_layer].shape[-1]
    for rank in config.ablation_ranks:
        if rank >= dim:
            continue
        for basis_name, basis in (
            ("binding", binding_basis(probe, rank)),
            ("random", random_basis(dim, rank, config.seed)),
        ):
            ablated_here = project_out(feats_test[best_layer], basis, standardizer)
            measured = {best_layer: ablated_here}
            if downstream:
                edit = [ablation_edit(basis, standardizer, best_layer)]
                measured.update(
                    extract(
                        model,
                        test.images,
                        downstream,
                        config.batch,
                        residual_edits=edit,
                        desc=f"ablation r={rank}",
                    )
                )
            for layer, feats in measured.items():
                z = kept.standardizer[layer](feats)
                x, y = P.gather(z, test.pairs)
                with torch.no_grad():
                    scores = kept.quadratic[layer](x, y).numpy()
                rows.append(
                    {
                        "ablated_layer": best_layer,
                        "rank": rank,
                        "basis": basis_name,
                        "layer": layer,
                        **P.pair_metrics(scores, scores > 0, test.pairs),
                    }
                )
            progress(
                f"ablation r={rank} {basis_name}: "
                + ", ".join(
                    f"L{r['layer']} sc-acc {r['same_class_accuracy']:.3f}" for r in rows[-len(measured) :]
                )
            )
    for layer in [best_layer, *downstream]:  # the clean reference
        z = kept.standardizer[layer](feats_test[layer])
        x, y = P.gather(z, test.pairs)
        with torch.no_grad():
            scores = kept.quadratic[layer](x, y).numpy()
        rows.append(
            {
                "ablated_layer": best_layer,
                "rank": 0,
                "basis": "none",
                "layer": layer,
                **P.pair_metrics(scores, scores > 0, test.pairs),
            }
        )
    return rows
