"""What the seam records at one layer for one attention call: a typed record, built by both backends
(``torch_path``, ``cuda_path``) and read back by ``Capture.from_records``.

Shapes (``heads`` are the captured query heads, ``n`` the call's queries, ``Tk`` its keys):
    row[name]         (batch, heads, n)       row statistics (argmax int64)
    key[name]         (batch, heads, Tk)      key statistics, prefill only
    pooled            (batch, heads, c, c)    pooled map, prefill only
    top_k             (batch, heads, n, k)    top-k key indices (k > 1 asked)
    rows[position]    (batch, heads, Tk)      exact probability rows kept by absolute query position
    decode_row        (batch, heads, Tk)      the exact row of the last query at a decode step
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

UNKNOWN_BACKEND = "unknown"


@dataclass
class LayerRecord:
    """One layer's record for one attention call (prefill, or one decode step)."""

    heads: tuple[int, ...]
    phase: str  # "prefill" or "decode"
    num_queries: int
    num_keys: int
    backend: str = UNKNOWN_BACKEND  # "pytorch" or "triton"; the session sets it
    row: dict[str, torch.Tensor] = field(default_factory=dict)
    key: dict[str, torch.Tensor] | None = None
    pooled: torch.Tensor | None = None
    top_k: torch.Tensor | None = None
    rows: dict[int, torch.Tensor] = field(default_factory=dict)
    decode_row: torch.Tensor | None = None

    def __post_init__(self):
        self.heads = tuple(int(h) for h in self.heads)
        if self.phase not in ("prefill", "decode"):
            raise ValueError(f"phase must be 'prefill' or 'decode', got {self.phase!r}")

    @property
    def positions(self) -> range:
        """Absolute positions of this call's queries (they sit at the last ``num_queries`` keys)."""
        offset = self.num_keys - self.num_queries
        return range(offset, offset + self.num_queries)

    @property
    def has_key_pass(self) -> bool:
        """Whether this call carries the prefill's key statistics or pooled map."""
        return self.key is not None or self.pooled is not None

    def to_dict(self) -> dict:
        """Plain fields (tensors stay tensors): for ``torch.save`` or a test; ``from_dict`` inverts it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> LayerRecord:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise ValueError(f"unknown layer-record field(s) {extra}; known: {sorted(known)}")
        return cls(**data)
