"""Retrieval-head Steps (workbench.analyses.retrieval): ``retrieval`` (scores from needle-in-a-haystack
runs), ``niah-eval`` (NIAH success with heads masked) and ``retrieval-validate`` (the causal check).

    - id: retrieval
      step: retrieval
      haystack: synthetic        # or a .txt file / folder of .txt files (relative to the pipeline file)
      needles: null              # JSONL of {needle, question, answer}; default: built-in / pass keys
      lengths: [500, 1000]       # context lengths in tokens
      depths: [0, 50, 100]       # needle depths in %
      threshold: 0.1             # a retrieval head scores above this
      max_new_tokens: 50

Head table: ``score`` (mean hit rate over successful runs), ``active_runs``, ``retrieval_head``.
``workbench heads retrieval``, ``eval niah`` and ``validate retrieval`` run these Steps on their own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from workbench.analyses.retrieval.grid import DEFAULT_DEPTHS, DEFAULT_LENGTHS
from workbench.pipeline.options import OptionError, StepOptions, flag, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput, write_parquet

HAYSTACK_HELP = "a .txt file, a folder of .txt files, or 'synthetic' (built-in passkey filler)"
NEEDLES_HELP = 'JSONL, one {"needle", "question", "answer"} per line (default: built-in needles)'
MASK_MODE_HELP = "uniform | zero | mean"
MASK_SCOPE_HELP = "prefill | decode | both"


@dataclass(frozen=True, kw_only=True)
class NiahOptions(StepOptions):
    """A needle-in-a-haystack grid (shared by the retrieval Steps)."""

    haystack: str = help_field("synthetic", HAYSTACK_HELP, path=True, names=("synthetic",))
    needles: Path | None = help_field(None, NEEDLES_HELP, path=True)
    lengths: tuple[int, ...] = help_field(DEFAULT_LENGTHS, "context lengths in tokens, comma-separated")
    depths: tuple[float, ...] = help_field(DEFAULT_DEPTHS, "needle depths in %, comma-separated")
    max_new_tokens: int = help_field(50, "answer length limit")


def check_grid(lengths, depths, names=("lengths", "depths")) -> None:
    if not lengths or any(x < 32 for x in lengths):
        raise OptionError(f"{flag(names[0])} needs context lengths of at least 32 tokens, got {list(lengths)}")
    if not depths or any(not 0 <= d <= 100 for d in depths):
        raise OptionError(f"{flag(names[1])} needs percentages in [0, 100], got {list(depths)}")


def check_niah(options: NiahOptions) -> None:
    check_grid(options.lengths, options.depths)
    if options.max_new_tokens < 1:
        raise OptionError(f"{flag('max_new_tokens')} must be at least 1")
    for name in ("haystack", "needles"):
        value = getattr(options, name)
        if value is not None and str(value) != "synthetic" and not Path(value).exists():
            raise OptionError(f"{flag(name)} {str(value)!r} does not exist")


def check_mask(mode: str, scope: str) -> None:
    from workbench.analyses.retrieval.masking import MASK_MODES
    from workbench.seam.interventions import SCOPES

    if mode not in MASK_MODES or scope not in SCOPES:
        raise OptionError(f"{flag('mask_mode')} must be one of {MASK_MODES} and {flag('mask_scope')} one of {SCOPES}")


def inputs_hash(haystack, needles) -> str:
    digest = hashlib.sha256(haystack.text.encode()).hexdigest()[:16]
    return hashlib.sha256((digest + repr([n.to_dict() for n in needles])).encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class RetrievalOptions(NiahOptions):
    threshold: float = help_field(0.1, "a retrieval head scores above this")


class RetrievalStep(Step):
    kind = "retrieval"
    record_kind = "retrieval-heads"
    Options = RetrievalOptions

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "kv_head", "score", "active_runs", "retrieval_head"}

    def validate_options(self, options: RetrievalOptions) -> None:
        check_niah(options)

    def execute(self, ctx: Context, options: RetrievalOptions, inputs) -> StepOutput:
        from workbench.analyses.retrieval.niah import detect_retrieval_heads, niah_summary, resolve_inputs

        hay, needles = resolve_inputs(options.haystack, options.needles, "detect")
        table, runs = detect_retrieval_heads(
            ctx.model(), hay, needles, options.lengths, options.depths, threshold=options.threshold,
            max_new_tokens=options.max_new_tokens, return_runs=True,
            units=ctx.units(),  # each NIAH run is kept as it finishes: a rerun continues
        )  # fmt: skip
        table["retrieval_head"] = table["retrieval_head"].astype(int)
        params = table.attrs["params"]
        summary = {
            **niah_summary(runs),
            "retrieval_heads": int(table["retrieval_head"].sum()),
            "heads": len(table),
            "successful_runs": params["successful_runs"],
            "total_runs": params["total_runs"],
            "top": [[int(r.layer), int(r.head), round(float(r.score), 4)] for r in table.head(10).itertuples()],
        }
        return StepOutput(
            head_tables={"heads": table}, arrays={"runs": runs}, summary=summary,
            input_hash=inputs_hash(hay, needles), params=params,
        )  # fmt: skip

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        from workbench.plots import head_heatmap

        return [head_heatmap(output.table("heads"), "score", title=f"{config['id']}: retrieval score")]


@dataclass(frozen=True, kw_only=True)
class NiahEvalOptions(NiahOptions):
    mask_heads: Path | None = help_field(None, "HEADS.json ranking the heads", path=True)
    top: int | None = help_field(None, "mask the top K heads of --mask-heads")
    mask_random: int | None = help_field(None, "mask K random heads instead")
    seed: int = help_field(0, "seed of the random heads")
    exclude_top: int = help_field(50, "random heads come from outside this top of --mask-heads")
    mask_mode: str = help_field("uniform", MASK_MODE_HELP)
    mask_scope: str = help_field("decode", MASK_SCOPE_HELP)


class NiahEvalStep(Step):
    """NIAH success (ROUGE-1 recall > 0.5) on held-out needles, optionally with heads masked."""

    kind = "niah-eval"
    record_kind = "niah-eval"
    Options = NiahEvalOptions

    def validate_options(self, o: NiahEvalOptions) -> None:
        check_grid(o.lengths, o.depths)
        check_mask(o.mask_mode, o.mask_scope)
        if o.top is not None and o.mask_random is not None:
            raise OptionError("give either --top K (with --mask-heads) or --mask-random K, not both")
        if o.top is not None and o.mask_heads is None:
            raise OptionError("--top K masks the top of a ranking: also give --mask-heads HEADS.json")
        if o.mask_heads is not None and o.top is None and o.mask_random is None:
            raise OptionError("--mask-heads needs --top K (or --mask-random K to draw outside its top --exclude-top)")
        if o.mask_random is not None and o.mask_heads is None and o.exclude_top > 0:
            raise OptionError("--mask-random excludes the top heads of a ranking: give --mask-heads HEADS.json or --exclude-top 0")
        for value, name in ((o.top, "top"), (o.mask_random, "mask_random")):
            if value is not None and value < 1:
                raise OptionError(f"{flag(name)} must be at least 1")

    def mask(self, model, o: NiahEvalOptions, hay):
        """Interventions and a description of what is masked."""
        from workbench.analyses.heads import read_heads_json, top_heads
        from workbench.analyses.retrieval.masking import build_mask, random_heads

        ranking = top_heads(read_heads_json(o.mask_heads), 10**9) if o.mask_heads else []
        if o.mask_random is not None:
            chosen, kind = random_heads(model.shape, o.mask_random, o.seed, ranking[: o.exclude_top]), "random"
        elif o.top is not None:
            chosen, kind = ranking[: o.top], "top"
        else:
            return [], {"kind": "none"}
        interventions = build_mask(model, chosen, o.mask_mode, o.mask_scope, haystack=hay)
        return interventions, {"kind": kind, "heads": [list(h) for h in chosen], "mode": o.mask_mode,
                               "scope": o.mask_scope, "seed": o.seed if kind == "random" else None,
                               "exclude_top": o.exclude_top if kind == "random" else None}  # fmt: skip

    def execute(self, ctx: Context, o: NiahEvalOptions, inputs) -> StepOutput:
        from workbench.analyses.retrieval.niah import evaluate_niah, niah_summary, resolve_inputs

        hay, needles = resolve_inputs(o.haystack, o.needles, "heldout")
        if o.mask_heads is not None and not Path(o.mask_heads).exists():
            raise FileNotFoundError(f"heads file {o.mask_heads} does not exist")
        model = ctx.model()
        interventions, mask = self.mask(model, o, hay)
        runs = evaluate_niah(model, hay, needles, o.lengths, o.depths, interventions=interventions,
                             max_new_tokens=o.max_new_tokens)  # fmt: skip
        summary = niah_summary(runs)
        params = {"mask": mask, "lengths": list(o.lengths), "depths": list(o.depths), "haystack": hay.source,
                  "needles": [n.to_dict() for n in needles], "max_new_tokens": o.max_new_tokens}  # fmt: skip
        result = {**summary, "params": params, "runs": runs.to_dict(orient="records")}
        return StepOutput(arrays={"runs": runs}, summary=summary, artifacts={"result": result},
                          input_hash=inputs_hash(hay, needles), params=params)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ValidateRetrievalOptions(NiahOptions):
    heads: Path | None = help_field(None, "HEADS.json from `heads retrieval` (else detect first)", path=True)
    top: tuple[int, ...] = help_field((10,), "K values, comma-separated")
    seeds: tuple[int, ...] = help_field((0, 1, 2), "seeds of the random-head controls")
    exclude_top: int = help_field(50, "random heads come from outside this top of the ranking")
    mask_mode: str = help_field("uniform", MASK_MODE_HELP)
    mask_scope: str = help_field("decode", MASK_SCOPE_HELP)
    lengths: tuple[int, ...] = help_field((600, 900), "context lengths in tokens, comma-separated")
    depths: tuple[float, ...] = help_field((10, 30, 60, 90), "needle depths in %, comma-separated")
    detect_lengths: tuple[int, ...] = help_field(DEFAULT_LENGTHS, "detection grid when --heads is absent")
    detect_depths: tuple[float, ...] = help_field(DEFAULT_DEPTHS, "detection depths when --heads is absent")


class ValidateRetrievalStep(Step):
    """The causal check: NIAH success with no mask, top-K masked, K random masked (several seeds)."""

    kind = "retrieval-validate"
    record_kind = "retrieval-validate"
    Options = ValidateRetrievalOptions

    def validate_options(self, o: ValidateRetrievalOptions) -> None:
        check_grid(o.lengths, o.depths)
        if o.heads is None:
            check_grid(o.detect_lengths, o.detect_depths, ("detect_lengths", "detect_depths"))
        if not o.top or not o.seeds or any(k < 1 for k in o.top):
            raise OptionError("--top and --seeds need comma-separated integers (K >= 1)")
        check_mask(o.mask_mode, o.mask_scope)

    def execute(self, ctx: Context, o: ValidateRetrievalOptions, inputs) -> StepOutput:
        from workbench.analyses.heads import read_heads_json
        from workbench.analyses.retrieval.masking import causal_check, summarise_check
        from workbench.analyses.retrieval.niah import detect_retrieval_heads, resolve_inputs

        hay, needles = resolve_inputs(o.haystack, o.needles, "heldout")
        table = read_heads_json(o.heads) if o.heads is not None else None
        model = ctx.model()
        artifacts = {}
        if table is None:
            detect_hay, detect_needles = resolve_inputs(o.haystack, None, "detect")
            ctx.echo("no --heads given: detecting retrieval heads first")
            table = detect_retrieval_heads(model, detect_hay, detect_needles, o.detect_lengths, o.detect_depths)
            artifacts["detected"] = table
        result, runs = causal_check(model, table, hay, needles, o.lengths, o.depths, top_k=o.top, seeds=o.seeds,
                                    exclude_top=o.exclude_top, mode=o.mask_mode, scope=o.mask_scope,
                                    max_new_tokens=o.max_new_tokens, return_runs=True)  # fmt: skip
        summary = summarise_check(result)
        held = result.attrs["held_out"]
        params = {**result.attrs["params"], "held_out": held, "detection": table.attrs.get("params", {})}
        artifacts.update(table=result, drops=summary, held_out=held)
        return StepOutput(
            arrays={"causal": result, "runs": runs, "summary": summary},
            summary={"table": result.to_dict(orient="records"), "drops": summary.to_dict(orient="records")},
            artifacts=artifacts, input_hash=inputs_hash(hay, needles), params=params,
        )  # fmt: skip
