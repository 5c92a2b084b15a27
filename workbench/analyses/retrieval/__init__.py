"""Retrieval heads (Wu et al. 2024), streaming heads (DuoAttention) and AttentionInfluence.

    from workbench.analyses.retrieval import detect_retrieval_heads, causal_check
    heads = detect_retrieval_heads(model, "essays/", lengths=(500, 1000), depths=(0, 50, 100))
    table = causal_check(model, heads, "essays/", top_k=(10,), seeds=(0, 1, 2))

Every function returns a DataFrame; the Steps in ``workbench.pipeline.steps.retrieval`` wrap them (the CLI
parses into those). The names below import on first use, so the grid defaults (``grid``) import without
torch.
"""

from __future__ import annotations

import importlib

from workbench.analyses.retrieval.grid import DEFAULT_DEPTHS, DEFAULT_LENGTHS

_WHERE = {
    "Haystack": "haystack",
    "Needle": "haystack",
    "PromptBuilder": "haystack",
    "StreamingMix": "streaming",
    "attention_influence": "influence",
    "build_mask": "masking",
    "builtin_needles": "haystack",
    "causal_check": "masking",
    "correlations": "streaming",
    "decode_argmax": "scoring",
    "deployment_check": "streaming",
    "detect_retrieval_heads": "niah",
    "evaluate_niah": "niah",
    "full_heads_by_gate": "streaming",
    "head_output_means": "masking",
    "long_range_mass": "streaming",
    "niah_summary": "niah",
    "passkey_needles": "haystack",
    "random_heads": "masking",
    "read_documents": "influence",
    "read_haystack": "haystack",
    "read_needles": "haystack",
    "reference_means": "masking",
    "retrieval_hits": "scoring",
    "rouge1_recall": "rouge",
    "run_niah": "niah",
    "run_prompts": "niah",
    "score_table": "scoring",
    "streaming_head_table": "streaming",
    "streaming_mask": "streaming",
    "summarise_check": "masking",
    "synthetic_haystack": "haystack",
    "train_gates": "streaming",
}

__all__ = [
    "DEFAULT_DEPTHS",
    "DEFAULT_LENGTHS",
    "Haystack",
    "Needle",
    "PromptBuilder",
    "StreamingMix",
    "attention_influence",
    "build_mask",
    "builtin_needles",
    "causal_check",
    "correlations",
    "decode_argmax",
    "deployment_check",
    "detect_retrieval_heads",
    "evaluate_niah",
    "full_heads_by_gate",
    "head_output_means",
    "long_range_mass",
    "niah_summary",
    "passkey_needles",
    "random_heads",
    "read_documents",
    "read_haystack",
    "read_needles",
    "reference_means",
    "retrieval_hits",
    "rouge1_recall",
    "run_niah",
    "run_prompts",
    "score_table",
    "streaming_head_table",
    "streaming_mask",
    "summarise_check",
    "synthetic_haystack",
    "train_gates",
]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"workbench.analyses.retrieval.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'workbench.analyses.retrieval' has no attribute {name!r}")
