"""``streaming`` (DuoAttention gates or the long-range-mass proxy per head, with their correlations) and
``influence`` (AttentionInfluence: loss increase per document with the top retrieval heads made
uniform); workbench.analyses.retrieval. ``workbench heads streaming`` and ``workbench influence`` run them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from workbench.pipeline.options import OptionError, StepOptions, flag, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput, write_parquet
from workbench.pipeline.steps.retrieval import HAYSTACK_HELP


@dataclass(frozen=True, kw_only=True)
class StreamingOptions(StepOptions):
    method: str = help_field("gate", "gate (DuoAttention optimisation) | proxy (long-range mass)")
    haystack: str = help_field("synthetic", HAYSTACK_HELP, path=True, names=("synthetic",))
    length: int = help_field(384, "tokens per passkey sample")
    steps: int = help_field(200, "gate optimisation steps")
    sink: int = help_field(16, "sink tokens kept by a streaming head")
    recent: int = help_field(64, "recent tokens kept by a streaming head")
    l1: float = help_field(0.05, "weight of mean |gate|")
    lr: float = help_field(0.02, "gate learning rate")
    samples: int = help_field(4, "passkey samples for the proxy")
    retrieval: Path | None = help_field(None, "HEADS.json of retrieval scores, to correlate", path=True)
    seed: int = help_field(0, "seed of the passkey samples")


class StreamingStep(Step):
    kind = "streaming"
    record_kind = "streaming"  # streaming-gate or streaming-proxy, by method
    Options = StreamingOptions

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "kv_head", "score"}

    def validate_options(self, o: StreamingOptions) -> None:
        if o.method not in ("gate", "proxy"):
            raise OptionError(f"{flag('method')} must be gate or proxy, got {o.method!r}")
        if o.steps < 1 or o.length < 64 or o.sink < 0 or o.recent < 1:
            raise OptionError("need --steps >= 1, --length >= 64, --sink >= 0, --recent >= 1")

    def execute(self, ctx: Context, o: StreamingOptions, inputs) -> StepOutput:
        import pandas as pd

        from workbench.analyses.heads import read_heads_json
        from workbench.analyses.retrieval.haystack import read_haystack
        from workbench.analyses.retrieval.streaming import (
            correlations,
            long_range_mass,
            per_kv,
            streaming_head_table,
            train_gates,
        )

        hay = read_haystack(o.haystack)
        retrieval_table = read_heads_json(o.retrieval) if o.retrieval is not None else None
        model = ctx.model()
        lrm = long_range_mass(model, hay, length=o.length, samples=o.samples, sink=o.sink, recent=o.recent, seed=o.seed)
        gates = None
        if o.method == "gate":
            gates = train_gates(model, hay, length=o.length, steps=o.steps, sink=o.sink, recent=o.recent, l1=o.l1,
                                lr=o.lr, seed=o.seed)  # fmt: skip
            table = streaming_head_table(model, gates, "gate", "duo-gate", gates.attrs["params"])
        else:
            params = {"length": o.length, "samples": o.samples, "sink": o.sink, "recent": o.recent, "seed": o.seed}
            table = streaming_head_table(model, per_kv(lrm, "lrm"), "lrm", "long-range-mass", params)
        corr = correlations(gates, lrm, retrieval_table) if (gates is not None or retrieval_table is not None) else None
        params = dict(table.attrs["params"], haystack=hay.source)
        if corr is not None:
            params["correlations"] = corr.to_dict(orient="records")
        arrays = {"lrm": lrm}
        if gates is not None:
            arrays["gates"] = gates
            arrays["history"] = pd.DataFrame(gates.attrs["history"])
        return StepOutput(
            head_tables={"heads": table}, arrays=arrays, summary={"correlations": params.get("correlations")},
            artifacts={} if corr is None else {"correlations": corr}, kind=f"streaming-{o.method}",
            input_hash=hashlib.sha256(hay.text.encode()).hexdigest()[:16], params=params,
        )  # fmt: skip

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]


@dataclass(frozen=True, kw_only=True)
class InfluenceOptions(StepOptions):
    heads: Path = help_field(help="HEADS.json of retrieval scores", path=True)
    docs: Path = help_field(help="a .txt file, a folder of .txt files, or JSONL with 'text'", path=True)
    fraction: float = help_field(0.05, "mask the top fraction of heads")
    top: int | None = help_field(None, "mask the top K heads instead of a fraction")
    max_tokens: int = help_field(1024, "keep the first N tokens of each document")
    random_sets: int = help_field(0, "the control: also mask as many random heads, N fresh sets per document")
    exclude_top: int = help_field(50, "draw the random heads from outside the top N by score")
    seed: int = help_field(0, "seed of the random heads")


class InfluenceStep(Step):
    kind = "influence"
    record_kind = "attention-influence"
    Options = InfluenceOptions

    def validate_options(self, o: InfluenceOptions) -> None:
        if not 0 < o.fraction <= 1 or (o.top is not None and o.top < 1) or o.max_tokens < 2:
            raise OptionError("need 0 < --fraction <= 1, --top >= 1 and --max-tokens >= 2")
        if o.random_sets < 0 or o.exclude_top < 0:
            raise OptionError("need --random-sets >= 0 and --exclude-top >= 0")

    def execute(self, ctx: Context, o: InfluenceOptions, inputs) -> StepOutput:
        from workbench.analyses.heads import read_heads_json
        from workbench.analyses.retrieval.influence import attention_influence, read_documents

        table = read_heads_json(o.heads)
        documents = read_documents(o.docs)
        scores = attention_influence(ctx.model(), table, documents, fraction=o.fraction, top=o.top,
                                     max_tokens=o.max_tokens, random_sets=o.random_sets,
                                     exclude_top=o.exclude_top, seed=o.seed)  # fmt: skip
        params = {**scores.attrs["params"], "heads": scores.attrs["heads"], "docs": str(o.docs)}
        summary = {"documents": len(scores), "mean_influence": float(scores.influence.mean())}
        if o.random_sets:
            summary["mean_influence_random"] = float(scores.influence_random.mean())
        return StepOutput(
            arrays={"scores": scores},
            summary=summary,
            input_hash=hashlib.sha256("".join(documents.text).encode()).hexdigest()[:16], params=params,
        )  # fmt: skip
