"""Batch sizes of the analyses' evaluation loops, in one place (the CLI and scripts pass their own)."""

SCORE_BATCH = (
    16  # sequences per forward when scoring options / completions (calibration tasks, LoFiT metrics)
)
GENERATE_BATCH = 16  # NIAH evaluation runs of one token length generated together
