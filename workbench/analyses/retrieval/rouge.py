"""ROUGE-1 recall with light stemming (the NIAH success test), without a new dependency.

Tokens are lowercase runs of letters and digits (as rouge-score tokenises); words longer than three
characters lose one common English suffix, so "parks"/"park" and "walking"/"walk" match.
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ingly", "edly", "ing", "ies", "ied", "ed", "es", "ly", "s")


def stem(word: str) -> str:
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                return base + "y"
            if suffix == "s" and base.endswith("s"):  # "glass" stays "glass"
                return word
            return base
    return word


def tokens(text: str) -> list[str]:
    return [stem(word) for word in _WORD.findall(text.lower())]


def rouge1_recall(reference: str, response: str) -> float:
    """Share of the reference's unigrams (with multiplicity) that the response contains."""
    wanted = Counter(tokens(reference))
    if not wanted:
        return 0.0
    got = Counter(tokens(response))
    overlap = sum(min(count, got[word]) for word, count in wanted.items())
    return overlap / sum(wanted.values())
