"""What to capture from attention: a small frozen dataclass that round-trips through JSON.

A capture spec names layers, query heads and statistics. Nothing is captured unless asked for, and a
spec that names a layer or head the model does not have is rejected before anything runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

try:
    from workbench_kernels.api import KEY_STATISTICS, ROW_STATISTICS  # one list each, kernels and seam
except ImportError as error:  # pragma: no cover - a broken install, not a machine without a GPU
    raise ImportError(
        "the project's kernels do not import as `workbench_kernels` (the folder kernels/ mapped by setup.py): "
        "install the package (`make install` or `pip install -e .`); running from a source tree without "
        "installing, source benchmarks/gpu_env.sh first"
    ) from error

DEFAULT_ROW_STATISTICS = tuple(name for name in ROW_STATISTICS if name != "span_mass")  # span needs a span


class SpecError(ValueError):
    """A capture spec or intervention that cannot run on this model; the message says how to fix it."""


def _as_tuple(value):
    if value is None:
        return None
    if isinstance(value, int):
        return (int(value),)
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class CaptureSpec:
    """Which layers, heads and statistics the attention seam records.

    Attributes:
        layers: layer indices, or None for all layers.
        heads: query-head indices, or None for all heads (GQA groups are reported per query head).
        statistics: per-query-row statistics (see ROW_STATISTICS; each defined once, in
            ``workbench_kernels.reference.row_statistic``). Distances are signed, i - j: with full attention
            (vision) keys after the query lower mean_distance and waad and are never local.
        key_statistics: per-key statistics, "received" and/or "fai" (KEY_STATISTICS; prefill only).
        sink_tokens: S, the number of leading keys counted by ``sink_mass``.
        local_window: W_loc; ``local_mass`` sums p_ij over 0 <= i - j < W_loc.
        waad_window: W in ``waad = sum_j p_ij min(i - j, W)``.
        span: [start, end) key span for ``span_mass``.
        fai_window: (H_lo, H_hi) for FAI.
        pooled_cells: side of the pooled attention map (0 = none; at most 256).
        rows: query positions whose exact probability rows are kept (negative counts from the end).
        decode_rows: keep the exact row of the last query at every decode step.
        top_k: also record the top-k key indices per row (k > 1; argmax is top-1).
    """

    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    statistics: tuple[str, ...] = DEFAULT_ROW_STATISTICS
    key_statistics: tuple[str, ...] = ()
    sink_tokens: int = 1
    local_window: int = 16
    waad_window: int = 10
    span: tuple[int, int] | None = None
    fai_window: tuple[int, int] = (10, 100)
    pooled_cells: int = 0
    rows: tuple[int, ...] = ()
    decode_rows: bool = False
    top_k: int = 1

    def __post_init__(self):
        object.__setattr__(self, "layers", _as_tuple(self.layers))
        object.__setattr__(self, "heads", _as_tuple(self.heads))
        object.__setattr__(self, "statistics", tuple(self.statistics))
        object.__setattr__(self, "key_statistics", tuple(self.key_statistics))
        object.__setattr__(self, "rows", tuple(int(r) for r in self.rows))
        object.__setattr__(self, "fai_window", tuple(int(x) for x in self.fai_window))
        if self.span is not None:
            object.__setattr__(self, "span", tuple(int(x) for x in self.span))
        unknown = [s for s in self.statistics if s not in ROW_STATISTICS]
        if unknown:
            raise SpecError(f"unknown statistic(s) {unknown}; choose from {list(ROW_STATISTICS)}")
        unknown = [s for s in self.key_statistics if s not in KEY_STATISTICS]
        if unknown:
            raise SpecError(f"unknown key statistic(s) {unknown}; choose from {list(KEY_STATISTICS)}")
        if "span_mass" in self.statistics and self.span is None:
            raise SpecError("statistic 'span_mass' needs span=(start, end)")
        if self.span is not None and not (len(self.span) == 2 and 0 <= self.span[0] < self.span[1]):
            raise SpecError(f"span must be (start, end) with 0 <= start < end, got {self.span}")
        if self.sink_tokens < 1 or self.local_window < 1 or self.waad_window < 1:
            raise SpecError("sink_tokens, local_window and waad_window must be >= 1")
        if not 0 <= self.pooled_cells <= 256:
            raise SpecError(f"pooled_cells must be in [0, 256], got {self.pooled_cells}")
        if self.top_k < 1:
            raise SpecError(f"top_k must be >= 1, got {self.top_k}")
        lo, hi = self.fai_window
        if not 0 <= lo <= hi:
            raise SpecError(f"fai_window must be (H_lo, H_hi) with 0 <= H_lo <= H_hi, got {self.fai_window}")

    def validate_for(self, num_layers: int, num_heads: int, num_tokens: int | None = None) -> None:
        """Raise SpecError naming the model's shape if a layer or head is out of range, or (given the
        input's ``num_tokens``) a requested exact row that the input does not have."""
        if num_tokens is not None:
            outside = [r for r in self.rows if not -num_tokens <= r < num_tokens]
            if outside:
                raise SpecError(
                    f"the spec asks for {len(self.rows)} exact rows ({min(self.rows)}..{max(self.rows)}) but the "
                    f"input has {num_tokens} tokens (positions 0..{num_tokens - 1} or -{num_tokens}..-1): rows "
                    f"{outside} do not exist; ask for at most {num_tokens}, e.g. rows=range(-{num_tokens}, 0)"
                )
        for layer in self.layers or ():
            if not 0 <= layer < num_layers:
                raise SpecError(
                    f"layer {layer} is out of range: the model has {num_layers} layers (0..{num_layers - 1})"
                )
        for head in self.heads or ():
            if not 0 <= head < num_heads:
                raise SpecError(
                    f"head {head} is out of range: the model has {num_heads} query heads per layer (0..{num_heads - 1})"
                )

    def wants_layer(self, layer: int) -> bool:
        return self.layers is None or layer in self.layers

    @property
    def captures_anything(self) -> bool:
        return bool(
            self.statistics or self.key_statistics or self.pooled_cells or self.rows or self.decode_rows
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> CaptureSpec:
        if not isinstance(data, dict):
            raise SpecError(f"a capture spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise SpecError(f"unknown capture-spec field(s) {extra}; known fields: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise SpecError(f"malformed capture spec: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> CaptureSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"capture spec is not valid JSON: {error}") from None
        return cls.from_dict(data)


NOTHING = CaptureSpec(statistics=())
