"""Rebuild sentiment.csv: short product/place/media reviews written for the workbench (no external data).

Each review pairs a subject with a verdict phrase; about a fifth of the verdicts use negation or
contrast ("not bad at all", "looked great but ...") so the task is not solved by one keyword. The
split is fixed (seeded, stratified): 80 calibration items, 120 test items.

    python workbench/data/tasks/build_sentiment.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SUBJECTS = [
    "The pasta", "This phone", "The hotel room", "The new album", "This novel", "The film", "The coffee",
    "The delivery service", "This laptop", "The museum tour", "The concert", "The customer support",
    "This vacuum cleaner", "The train ride", "The soup", "The sequel", "This backpack", "The haircut",
    "The hiking trail", "The app update", "The pizza", "This mattress", "The play", "The rental car",
    "The podcast episode",
]
POSITIVE = [
    "was a delight from start to finish.", "exceeded every expectation I had.", "was absolutely wonderful.",
    "made my whole week better.", "is worth every penny.", "was fantastic and I would gladly go back.",
    "felt carefully made and a joy to use.", "was the best I have had in years.", "left me smiling for hours.",
    "was superb, I recommend it to everyone.", "works perfectly and looks great.", "was a pleasant surprise.",
    "was brilliant, funny and moving.", "is excellent value and very reliable.", "was fresh, warm and delicious.",
    "was friendly, fast and helpful.", "is a masterpiece.", "was lovely and relaxing.",
    "did exactly what I hoped, and more.", "was charming and beautifully done.", "is simply great.",
    "impressed me more than I expected.", "was a real treat.", "was comfortable and well worth it.",
    "is my new favourite.", "was not bad at all, in fact it was great.",
    "had a slow start but turned out wonderful.", "was never boring for a second.",
    "could not have been better.", "was cheap, yet it turned out excellent.",
    "looked plain but was a joy in every way.", "had no flaws that I could find.",
    "was gorgeous and thoughtfully designed.", "was a pleasure; five stars.", "made me very happy.",
    "was good enough that I bought a second one.", "was delightful and I loved it.",
    "gave me exactly the calm evening I needed.", "was tasty and generous.", "was nothing short of amazing.",
]
NEGATIVE = [
    "was a complete waste of money.", "left me deeply disappointed.", "was awful from start to finish.",
    "broke after two days.", "was bland and overpriced.", "was rude, slow and unhelpful.",
    "is the worst I have tried in years.", "made me regret coming.", "was boring and far too long.",
    "was dirty and smelled bad.", "stopped working almost immediately.", "was a frustrating mess.",
    "was cold, stale and tasteless.", "is not worth it.", "was a huge letdown.", "was painful to sit through.",
    "felt cheap and poorly made.", "was terrible, avoid it.", "ruined my evening.", "was noisy and uncomfortable.",
    "is a disaster.", "was dull and lifeless.", "keeps crashing and losing my data.", "was late and damaged.",
    "looked great but fell apart within a week.", "was not good at all.", "had good reviews, yet it was dreadful.",
    "was never once enjoyable.", "could hardly have been worse.", "promised a lot and delivered nothing.",
    "was soggy and far too salty.", "was a chore to use.", "made me angry.", "was ugly and awkward.",
    "was mediocre at best, and honestly worse.", "was so bad I asked for a refund.",
    "was confusing and badly written.", "gave me a headache.", "was disappointing in every way.",
    "was overrated and forgettable.",
]


def build(path: Path, seed: int = 5) -> None:
    rng = random.Random(seed)
    rows = []
    for label, verdicts in (("positive", POSITIVE), ("negative", NEGATIVE)):
        pairs = [(s, v) for s in SUBJECTS for v in verdicts]
        rng.shuffle(pairs)
        rows += [(f"{subject} {verdict}", label) for subject, verdict in pairs[:100]]
    rng.shuffle(rows)
    calibration = {"positive": 0, "negative": 0}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "split", "text", "label"])
        for index, (text, label) in enumerate(rows):
            split = "test"
            if calibration[label] < 40:
                calibration[label] += 1
                split = "calibration"
            writer.writerow([f"sst-wb-{index:03d}", split, text, label])


if __name__ == "__main__":
    build(Path(__file__).with_name("sentiment.csv"))
