"""Retrieval-head commands: ``heads retrieval``, ``eval niah``, ``validate retrieval``, ``heads streaming``,
``influence``. Each parses its arguments into its Step's options (workbench.pipeline.steps.retrieval and
.streaming), runs the Step through the pipeline runner (which records the run) and writes its file."""

from __future__ import annotations

from pathlib import Path

import typer

from workbench.cli import app
from workbench.cli.common import (
    DEFAULT_DEVICE,
    DEFAULT_DTYPE,
    Device,
    Dtype,
    build_options,
    friendly,
    option,
    run_step,
    uses_store,
    write_json,
)
from workbench.cli.groups import eval_app, heads_app, validate_app
from workbench.pipeline.steps.retrieval import NiahEvalOptions, RetrievalOptions, ValidateRetrievalOptions
from workbench.pipeline.steps.streaming import InfluenceOptions, StreamingOptions
from workbench.seam.spec import SpecError


def _check_out(out: Path, suffix: str) -> None:
    if out.suffix != suffix:
        raise SpecError(f"--out must be a {suffix} path, got {out}")


@heads_app.command("retrieval")
@friendly
@uses_store
def heads_retrieval(
    model: str = typer.Argument(..., help="model name (see `workbench models`), HF id or local path"),
    out: Path = typer.Option(..., "--out", help="HEADS.json to write (heads sorted by retrieval score)"),
    haystack: str | None = option(RetrievalOptions, "haystack"),
    needles: Path | None = option(RetrievalOptions, "needles"),
    lengths: str | None = option(RetrievalOptions, "lengths"),
    depths: str | None = option(RetrievalOptions, "depths"),
    threshold: float | None = option(RetrievalOptions, "threshold"),
    max_new_tokens: int | None = option(RetrievalOptions, "max_new_tokens"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Retrieval score per head (Wu et al. 2024) from NIAH runs; write HEADS.json, record the run."""
    from workbench.analyses.heads import write_heads_json

    options = build_options(RetrievalOptions, locals())
    _check_out(out, ".json")
    done = run_step("retrieval", options)
    summary, table = done.output.summary, done.output.table("heads")
    write_heads_json(out, table.assign(retrieval_head=table["retrieval_head"].astype(bool)), done.model.name)
    typer.echo(f"{summary['successful_runs']}/{summary['total_runs']} runs succeeded; "
               f"{summary['retrieval_heads']}/{summary['heads']} heads score > {options.threshold}")
    typer.echo("top heads: " + ", ".join(f"({a},{b}) {s:.2f}" for a, b, s in summary["top"]))
    typer.echo(f"wrote {out}; run {done.run_id}")


@eval_app.command("niah")
@friendly
@uses_store
def eval_niah(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    out: Path = typer.Option(..., "--out", help="RESULT.json: success_rate, mean_rouge_recall, runs"),
    mask_heads: Path | None = option(NiahEvalOptions, "mask_heads"),
    top: int | None = option(NiahEvalOptions, "top"),
    mask_random: int | None = option(NiahEvalOptions, "mask_random"),
    seed: int | None = option(NiahEvalOptions, "seed"),
    exclude_top: int | None = option(NiahEvalOptions, "exclude_top"),
    mask_mode: str | None = option(NiahEvalOptions, "mask_mode"),
    mask_scope: str | None = option(NiahEvalOptions, "mask_scope"),
    haystack: str | None = option(NiahEvalOptions, "haystack"),
    needles: Path | None = option(NiahEvalOptions, "needles", help="JSONL of needles (default: built-in held-out needles)"),
    lengths: str | None = option(NiahEvalOptions, "lengths"),
    depths: str | None = option(NiahEvalOptions, "depths"),
    max_new_tokens: int | None = option(NiahEvalOptions, "max_new_tokens"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """NIAH success (ROUGE-1 recall > 0.5), optionally with heads masked; write RESULT.json, record the run."""
    options = build_options(NiahEvalOptions, locals())
    _check_out(out, ".json")
    done = run_step("niah-eval", options)
    summary, result = done.output.summary, done.output.artifacts["result"]
    write_json(out, {**summary, "model": done.model.name, "params": result["params"], "runs": result["runs"]})
    typer.echo(f"success rate {summary['success_rate']:.2f}, mean ROUGE-1 recall {summary['mean_rouge_recall']:.2f} "
               f"over {summary['num_runs']} runs (mask: {result['params']['mask']['kind']}); wrote {out}; run {done.run_id}")


@validate_app.command("retrieval")
@friendly
@uses_store
def validate_retrieval(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    heads: Path | None = option(ValidateRetrievalOptions, "heads"),
    out: Path | None = typer.Option(None, "--out", help="also write the causal table as JSON"),
    top: str | None = option(ValidateRetrievalOptions, "top"),
    seeds: str | None = option(ValidateRetrievalOptions, "seeds"),
    exclude_top: int | None = option(ValidateRetrievalOptions, "exclude_top"),
    mask_mode: str | None = option(ValidateRetrievalOptions, "mask_mode"),
    mask_scope: str | None = option(ValidateRetrievalOptions, "mask_scope"),
    haystack: str | None = option(ValidateRetrievalOptions, "haystack"),
    needles: Path | None = option(ValidateRetrievalOptions, "needles", help="JSONL of needles (default: built-in held-out needles)"),
    lengths: str | None = option(ValidateRetrievalOptions, "lengths"),
    depths: str | None = option(ValidateRetrievalOptions, "depths"),
    detect_lengths: str | None = option(ValidateRetrievalOptions, "detect_lengths"),
    detect_depths: str | None = option(ValidateRetrievalOptions, "detect_depths"),
    max_new_tokens: int | None = option(ValidateRetrievalOptions, "max_new_tokens"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """The causal check: NIAH success with no mask, top-K masked, K random masked (several seeds)."""
    from workbench.analyses.heads import write_heads_json

    options = build_options(ValidateRetrievalOptions, locals())
    if out is not None:
        _check_out(out, ".json")
    done = run_step("retrieval-validate", options)
    found = done.output.artifacts
    result, summary, held = found["table"], found["drops"], found["held_out"]
    if "detected" in found and out is not None:
        write_heads_json(out.with_name(out.stem + "-heads.json"), found["detected"], done.model.name)
    typer.echo(result.drop(columns=["heads"]).to_string(index=False))
    typer.echo(summary.to_string(index=False))
    if not held["held_out"]:
        note = "unknown (the heads file records no detection grid)" if not held["known"] else (
            f"NOT held out: shares needles {held['shared_needles']} / depths {held['shared_depths']} with detection")
        typer.echo(f"warning: validation runs are {note}", err=True)
    if out is not None:
        write_json(out, {"model": done.model.name, "params": done.output.params, "table": result.to_dict(orient="records"),
                         "drops": summary.to_dict(orient="records")})
    typer.echo(f"run {done.run_id}" + (f"; wrote {out}" if out else ""))


@heads_app.command("streaming")
@friendly
@uses_store
def heads_streaming(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    out: Path = typer.Option(..., "--out", help="HEADS.json (score = gate or long-range mass; query heads)"),
    method: str | None = option(StreamingOptions, "method"),
    haystack: str | None = option(StreamingOptions, "haystack"),
    length: int | None = option(StreamingOptions, "length"),
    steps: int | None = option(StreamingOptions, "steps"),
    sink: int | None = option(StreamingOptions, "sink"),
    recent: int | None = option(StreamingOptions, "recent"),
    l1: float | None = option(StreamingOptions, "l1"),
    lr: float | None = option(StreamingOptions, "lr"),
    samples: int | None = option(StreamingOptions, "samples"),
    retrieval: Path | None = option(StreamingOptions, "retrieval"),
    seed: int | None = option(StreamingOptions, "seed"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Streaming vs retrieval heads: DuoAttention gates or the pattern proxy, with their correlations."""
    from workbench.analyses.heads import write_heads_json

    options = build_options(StreamingOptions, locals())
    _check_out(out, ".json")
    done = run_step("streaming", options)
    write_heads_json(out, done.output.table("heads"), done.model.name, params=done.output.params)
    if "correlations" in done.output.artifacts:
        typer.echo(done.output.artifacts["correlations"].to_string(index=False))
    typer.echo(f"wrote {out}; run {done.run_id}")


@app.command("influence")
@friendly
@uses_store
def influence(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    heads: Path = typer.Option(..., "--heads", help="HEADS.json of retrieval scores"),
    docs: Path = typer.Option(..., "--docs", help="a .txt file, a folder of .txt files, or JSONL with 'text'"),
    out: Path = typer.Option(..., "--out", help="SCORES.parquet: doc, domain, tokens, loss_base, loss_masked, influence"),
    fraction: float | None = option(InfluenceOptions, "fraction"),
    top: int | None = option(InfluenceOptions, "top"),
    max_tokens: int | None = option(InfluenceOptions, "max_tokens"),
    random_sets: int | None = option(InfluenceOptions, "random_sets"),
    exclude_top: int | None = option(InfluenceOptions, "exclude_top"),
    seed: int | None = option(InfluenceOptions, "seed"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """AttentionInfluence: relative loss increase per document with the top retrieval heads made uniform."""
    from workbench.store.record import write_parquet

    options = build_options(InfluenceOptions, locals())
    _check_out(out, ".parquet")
    done = run_step("influence", options)
    scores = done.output.table("scores")
    write_parquet(scores, out)
    control = (f", random heads {scores.influence_random.mean():.4f}" if "influence_random" in scores else "")
    typer.echo(f"{len(scores)} documents, mean influence {scores.influence.mean():.4f}{control}; wrote {out}; "
               f"run {done.run_id}")
