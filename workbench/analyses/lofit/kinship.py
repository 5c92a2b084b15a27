"""Synthetic two-hop kinship stories in CLUTRR's record format (``story``, ``query``, ``target_text``).

A small SFT task with a clean metric that needs no download: two sentences state two relations
(X -r1-> Y, Y -r2-> Z, read "Y is X's r1") and the answer is Z's relation to X. The shipped sample
``workbench/data/lofit/kinship_sample.jsonl`` is ``generate(200, seed=0)``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

MALE = [
    "Adam",
    "Ben",
    "Carl",
    "Dan",
    "Eli",
    "Frank",
    "Greg",
    "Hugo",
    "Ivan",
    "Jack",
    "Leo",
    "Max",
    "Noah",
    "Owen",
    "Paul",
    "Ray",
]
FEMALE = [
    "Alice",
    "Beth",
    "Cara",
    "Dora",
    "Emma",
    "Fay",
    "Gina",
    "Hana",
    "Iris",
    "June",
    "Kate",
    "Lily",
    "Mia",
    "Nora",
    "Ruth",
    "Tess",
]

# relation kind -> (male word, female word)
WORDS = {
    "child": ("son", "daughter"),
    "parent": ("father", "mother"),
    "sibling": ("brother", "sister"),
    "spouse": ("husband", "wife"),
    "grandchild": ("grandson", "granddaughter"),
    "grandparent": ("grandfather", "grandmother"),
    "nibling": ("nephew", "niece"),
    "pibling": ("uncle", "aunt"),
    "child-in-law": ("son-in-law", "daughter-in-law"),
    "parent-in-law": ("father-in-law", "mother-in-law"),
}
# (X's r1 is Y, Y's r2 is Z) -> Z is X's ...
COMPOSE = {
    ("child", "child"): "grandchild",
    ("parent", "parent"): "grandparent",
    ("sibling", "child"): "nibling",
    ("parent", "sibling"): "pibling",
    ("child", "spouse"): "child-in-law",
    ("spouse", "parent"): "parent-in-law",
    ("spouse", "child"): "child",
    ("child", "sibling"): "child",
    ("parent", "spouse"): "parent",
    ("sibling", "sibling"): "sibling",
    ("sibling", "parent"): "parent",
    ("parent", "child"): "sibling",
}
TEMPLATES = [
    "{x} went to the market with {pos} {rel} {y}.",
    "{y} is the {rel} of {x}, and they talk every week.",
    "{x} baked a cake for {pos} {rel}, {y}.",
    "On Sunday {x} visited {pos} {rel} {y}.",
]


def _sentence(rng: random.Random, x: str, x_male: bool, kind: str, y: str, y_male: bool) -> str:
    rel = WORDS[kind][0 if y_male else 1]
    return rng.choice(TEMPLATES).format(x=x, y=y, rel=rel, pos="his" if x_male else "her")


def generate(count: int, seed: int = 0) -> list[dict]:
    """``count`` stories; each uses three distinct names and one of the composition rules."""
    rng = random.Random(seed)
    rules = sorted(COMPOSE)
    records = []
    for index in range(count):
        first, second = rules[index % len(rules)]
        genders = [rng.random() < 0.5 for _ in range(3)]
        if first == "spouse":  # keep couples mixed, as the story templates assume
            genders[1] = not genders[0]
        if second == "spouse":
            genders[2] = not genders[1]
        names = []
        for male in genders:
            pool = [n for n in (MALE if male else FEMALE) if n not in names]
            names.append(rng.choice(pool))
        x, y, z = names
        story = " ".join(
            [
                _sentence(rng, x, genders[0], first, y, genders[1]),
                _sentence(rng, y, genders[1], second, z, genders[2]),
            ]
        )
        target = WORDS[COMPOSE[(first, second)]][0 if genders[2] else 1]
        records.append(
            {"id": f"kinship-{seed}-{index}", "story": story, "query": repr((x, z)), "target_text": target}
        )
    rng.shuffle(records)
    return records


def write_jsonl(path: Path, records: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
