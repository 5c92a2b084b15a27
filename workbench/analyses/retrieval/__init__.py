"""Retrieval heads (Wu et al. 2024), streaming heads (DuoAttention) and AttentionInfluence.

    from workbench.analyses.retrieval import detect_retrieval_heads, causal_check
    heads = detect_retrieval_heads(model, "essays/", lengths=(500, 1000), depths=(0, 50, 100))
    table = causal_check(model, heads, "essays/", top_k=(10,), seeds=(0, 1, 2))

Every function returns a DataFrame; the CLI (``workbench heads retrieval`` etc.) wraps them.
"""

from workbench.analyses.retrieval.haystack import (
    Haystack,
    Needle,
    PromptBuilder,
    builtin_needles,
    passkey_needles,
    read_haystack,
    read_needles,
    synthetic_haystack,
)
from workbench.analyses.retrieval.influence import attention_influence, read_documents
from workbench.analyses.retrieval.masking import (
    build_mask,
    causal_check,
    head_output_means,
    random_heads,
    reference_means,
    summarise_check,
)
from workbench.analyses.retrieval.niah import (
    detect_retrieval_heads,
    evaluate_niah,
    niah_summary,
    run_niah,
    run_prompts,
)
from workbench.analyses.retrieval.rouge import rouge1_recall
from workbench.analyses.retrieval.scoring import decode_argmax, retrieval_hits, score_table
from workbench.analyses.retrieval.streaming import (
    StreamingMix,
    correlations,
    deployment_check,
    full_heads_by_gate,
    long_range_mass,
    streaming_head_table,
    streaming_mask,
    train_gates,
)

__all__ = [
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
