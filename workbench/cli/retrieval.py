"""Retrieval-head commands: ``heads retrieval``, ``eval niah``, ``validate retrieval``, ``heads streaming``,
``influence``. Each writes its output atomically and records the run in the store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

from workbench.cli import app
from workbench.cli.common import (
    DEFAULT_DEVICE,
    DEFAULT_DTYPE,
    Device,
    Dtype,
    friendly,
    load,
    parse_ints,
    record,
    runtime,
    uses_store,
    write_json,
)
from workbench.cli.groups import eval_app, heads_app, validate_app
from workbench.seam.spec import SpecError

HAYSTACK_HELP = "a .txt file, a folder of .txt files, or 'synthetic' (built-in passkey filler; the default)"
NEEDLES_HELP = 'JSONL, one {"needle", "question", "answer"} per line (default: built-in needles)'


def _floats(value: str | None, name: str) -> tuple[float, ...] | None:
    if value is None or value == "":
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise SpecError(f"{name} expects comma-separated numbers, got {value!r}") from None


def _grid(lengths: str, depths: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    grid_lengths = parse_ints(lengths)
    grid_depths = _floats(depths, "--depths")
    if not grid_lengths or any(x < 32 for x in grid_lengths):
        raise SpecError(f"--lengths needs context lengths of at least 32 tokens, got {lengths!r}")
    if not grid_depths or any(not 0 <= d <= 100 for d in grid_depths):
        raise SpecError(f"--depths needs percentages in [0, 100], got {depths!r}")
    return grid_lengths, grid_depths


def _check_out(out: Path, suffix: str) -> None:
    if out.suffix != suffix:
        raise SpecError(f"--out must be a {suffix} path, got {out}")


def _inputs_hash(haystack, needles) -> str:
    digest = hashlib.sha256(haystack.text.encode()).hexdigest()[:16]
    return hashlib.sha256((digest + repr([n.to_dict() for n in needles])).encode()).hexdigest()[:16]


def _store():
    from workbench.store import default_store

    return default_store()


@heads_app.command("retrieval")
@friendly
@uses_store
def heads_retrieval(
    model: str = typer.Argument(..., help="model name (see `workbench models`), HF id or local path"),
    out: Path = typer.Option(..., "--out", help="HEADS.json to write (heads sorted by retrieval score)"),
    haystack: str = typer.Option("synthetic", "--haystack", help=HAYSTACK_HELP),
    needles: Path | None = typer.Option(None, "--needles", help=NEEDLES_HELP),
    lengths: str = typer.Option("500,1000", "--lengths", help="context lengths in tokens, comma-separated"),
    depths: str = typer.Option("0,50,100", "--depths", help="needle depths in %, comma-separated"),
    threshold: float = typer.Option(0.1, "--threshold", help="a retrieval head scores above this"),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Retrieval score per head (Wu et al. 2024) from NIAH runs; write HEADS.json, record the run."""
    from workbench.analyses.heads import write_heads_json
    from workbench.analyses.retrieval.niah import detect_retrieval_heads, resolve_inputs

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_out(out, ".json")
    grid_lengths, grid_depths = _grid(lengths, depths)
    hay, needle_list = resolve_inputs(haystack, needles, "detect")
    loaded = load(model, where)
    table, runs = detect_retrieval_heads(loaded, hay, needle_list, grid_lengths, grid_depths, threshold=threshold,
                                         max_new_tokens=max_new_tokens, return_runs=True)
    params = table.attrs["params"]
    summary = {"retrieval_heads": int(table.retrieval_head.sum()), "heads": len(table),
               "successful_runs": params["successful_runs"], "total_runs": params["total_runs"],
               "top": [[int(r.layer), int(r.head), round(float(r.score), 4)] for r in table.head(10).itertuples()]}
    run_id = _store().put_run("retrieval-heads", loaded.name, _inputs_hash(hay, needle_list), params=params,
                              head_tables={"heads": table}, arrays={"runs": runs}, summary=summary, runtime=record(loaded))
    write_heads_json(out, table, loaded.name)
    typer.echo(f"{summary['successful_runs']}/{summary['total_runs']} runs succeeded; "
               f"{summary['retrieval_heads']}/{summary['heads']} heads score > {threshold}")
    typer.echo("top heads: " + ", ".join(f"({a},{b}) {s:.2f}" for a, b, s in summary["top"]))
    typer.echo(f"wrote {out}; run {run_id}")


def _mask_from_options(loaded, mask_heads_file, top, mask_random, seed, exclude_top, mode, scope, hay):
    """Interventions and a description from the eval options (validated before the model runs)."""
    from workbench.analyses.heads import read_heads_json, top_heads
    from workbench.analyses.retrieval.masking import build_mask, random_heads

    ranking = top_heads(read_heads_json(mask_heads_file), 10**9) if mask_heads_file else []
    if mask_random is not None:
        chosen = random_heads(loaded.shape, mask_random, seed, ranking[:exclude_top])
        kind = "random"
    elif top is not None:
        chosen = ranking[:top]
        kind = "top"
    else:
        return [], {"kind": "none"}
    interventions = build_mask(loaded, chosen, mode, scope, haystack=hay)
    return interventions, {"kind": kind, "heads": [list(h) for h in chosen], "mode": mode, "scope": scope,
                           "seed": seed if kind == "random" else None, "exclude_top": exclude_top if kind == "random" else None}


@eval_app.command("niah")
@friendly
@uses_store
def eval_niah(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    out: Path = typer.Option(..., "--out", help="RESULT.json: success_rate, mean_rouge_recall, runs"),
    mask_heads_file: Path | None = typer.Option(None, "--mask-heads", help="HEADS.json ranking the heads"),
    top: int | None = typer.Option(None, "--top", help="mask the top K heads of --mask-heads"),
    mask_random: int | None = typer.Option(None, "--mask-random", help="mask K random heads instead"),
    seed: int = typer.Option(0, "--seed", help="seed of the random heads"),
    exclude_top: int = typer.Option(50, "--exclude-top", help="random heads come from outside this top of --mask-heads"),
    mask_mode: str = typer.Option("uniform", "--mask-mode", help="uniform | zero | mean"),
    mask_scope: str = typer.Option("decode", "--mask-scope", help="prefill | decode | both"),
    haystack: str = typer.Option("synthetic", "--haystack", help=HAYSTACK_HELP),
    needles: Path | None = typer.Option(None, "--needles", help=NEEDLES_HELP + " (default: built-in held-out needles)"),
    lengths: str = typer.Option("500,1000", "--lengths"),
    depths: str = typer.Option("0,50,100", "--depths"),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """NIAH success (ROUGE-1 recall > 0.5), optionally with heads masked; write RESULT.json, record the run."""
    from workbench.analyses.retrieval.masking import MASK_MODES
    from workbench.analyses.retrieval.niah import evaluate_niah, niah_summary, resolve_inputs
    from workbench.seam.interventions import SCOPES

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_out(out, ".json")
    grid_lengths, grid_depths = _grid(lengths, depths)
    if mask_mode not in MASK_MODES or mask_scope not in SCOPES:
        raise SpecError(f"--mask-mode must be one of {MASK_MODES} and --mask-scope one of {SCOPES}")
    if top is not None and mask_random is not None:
        raise SpecError("give either --top K (with --mask-heads) or --mask-random K, not both")
    if top is not None and mask_heads_file is None:
        raise SpecError("--top K masks the top of a ranking: also give --mask-heads HEADS.json")
    if mask_heads_file is not None and top is None and mask_random is None:
        raise SpecError("--mask-heads needs --top K (or --mask-random K to draw outside its top --exclude-top)")
    if mask_random is not None and mask_heads_file is None and exclude_top > 0:
        raise SpecError("--mask-random excludes the top heads of a ranking: give --mask-heads HEADS.json or --exclude-top 0")
    for value, name in ((top, "--top"), (mask_random, "--mask-random")):
        if value is not None and value < 1:
            raise SpecError(f"{name} must be at least 1")
    hay, needle_list = resolve_inputs(haystack, needles, "heldout")
    loaded = load(model, where)
    interventions, mask = _mask_from_options(loaded, mask_heads_file, top, mask_random, seed, exclude_top,
                                             mask_mode, mask_scope, hay)
    runs = evaluate_niah(loaded, hay, needle_list, grid_lengths, grid_depths, interventions=interventions,
                         max_new_tokens=max_new_tokens)
    summary = niah_summary(runs)
    params = {"mask": mask, "lengths": list(grid_lengths), "depths": list(grid_depths), "haystack": hay.source,
              "needles": [n.to_dict() for n in needle_list], "max_new_tokens": max_new_tokens}
    run_id = _store().put_run("niah-eval", loaded.name, _inputs_hash(hay, needle_list), params=params,
                              arrays={"runs": runs}, summary=summary, runtime=record(loaded))
    write_json(out, {**summary, "model": loaded.name, "params": params, "runs": runs.to_dict(orient="records")})
    typer.echo(f"success rate {summary['success_rate']:.2f}, mean ROUGE-1 recall {summary['mean_rouge_recall']:.2f} "
               f"over {summary['num_runs']} runs (mask: {mask['kind']}); wrote {out}; run {run_id}")


@validate_app.command("retrieval")
@friendly
@uses_store
def validate_retrieval(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    heads: Path | None = typer.Option(None, "--heads", help="HEADS.json from `heads retrieval` (else detect first)"),
    out: Path | None = typer.Option(None, "--out", help="also write the causal table as JSON"),
    top: str = typer.Option("10", "--top", help="K values, comma-separated"),
    seeds: str = typer.Option("0,1,2", "--seeds", help="seeds of the random-head controls"),
    exclude_top: int = typer.Option(50, "--exclude-top"),
    mask_mode: str = typer.Option("uniform", "--mask-mode", help="uniform | zero | mean"),
    mask_scope: str = typer.Option("decode", "--mask-scope", help="prefill | decode | both"),
    haystack: str = typer.Option("synthetic", "--haystack", help=HAYSTACK_HELP),
    needles: Path | None = typer.Option(None, "--needles", help=NEEDLES_HELP + " (default: built-in held-out needles)"),
    lengths: str = typer.Option("600,900", "--lengths"),
    depths: str = typer.Option("10,30,60,90", "--depths"),
    detect_lengths: str = typer.Option("500,1000", "--detect-lengths", help="detection grid when --heads is absent"),
    detect_depths: str = typer.Option("0,50,100", "--detect-depths"),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """The causal check: NIAH success with no mask, top-K masked, K random masked (several seeds)."""
    from workbench.analyses.heads import read_heads_json, write_heads_json
    from workbench.analyses.retrieval.masking import MASK_MODES, causal_check, summarise_check
    from workbench.analyses.retrieval.niah import detect_retrieval_heads, resolve_inputs
    from workbench.seam.interventions import SCOPES

    where = runtime(device, dtype)  # a missing device fails here, before any work
    if out is not None:
        _check_out(out, ".json")
    grid_lengths, grid_depths = _grid(lengths, depths)
    top_k, seed_list = parse_ints(top), parse_ints(seeds)
    if not top_k or not seed_list or any(k < 1 for k in top_k):
        raise SpecError("--top and --seeds need comma-separated integers (K >= 1)")
    if mask_mode not in MASK_MODES or mask_scope not in SCOPES:
        raise SpecError(f"--mask-mode must be one of {MASK_MODES} and --mask-scope one of {SCOPES}")
    hay, needle_list = resolve_inputs(haystack, needles, "heldout")
    table = read_heads_json(heads) if heads is not None else None
    loaded = load(model, where)
    if table is None:
        d_lengths, d_depths = _grid(detect_lengths, detect_depths)
        detect_hay, detect_needles = resolve_inputs(haystack, None, "detect")
        typer.echo("no --heads given: detecting retrieval heads first", err=True)
        table = detect_retrieval_heads(loaded, detect_hay, detect_needles, d_lengths, d_depths)
        if out is not None:
            write_heads_json(out.with_name(out.stem + "-heads.json"), table, loaded.name)
    result, runs = causal_check(loaded, table, hay, needle_list, grid_lengths, grid_depths, top_k=top_k,
                                seeds=seed_list, exclude_top=exclude_top, mode=mask_mode, scope=mask_scope,
                                max_new_tokens=max_new_tokens, return_runs=True)
    summary = summarise_check(result)
    held = result.attrs["held_out"]
    params = {**result.attrs["params"], "held_out": held, "detection": table.attrs.get("params", {})}
    run_id = _store().put_run("retrieval-validate", loaded.name, _inputs_hash(hay, needle_list), params=params,
                              arrays={"causal": result, "runs": runs, "summary": summary},
                              summary={"table": result.to_dict(orient="records"), "drops": summary.to_dict(orient="records")},
                              runtime=record(loaded))
    typer.echo(result.drop(columns=["heads"]).to_string(index=False))
    typer.echo(summary.to_string(index=False))
    if not held["held_out"]:
        note = "unknown (the heads file records no detection grid)" if not held["known"] else (
            f"NOT held out: shares needles {held['shared_needles']} / depths {held['shared_depths']} with detection")
        typer.echo(f"warning: validation runs are {note}", err=True)
    if out is not None:
        write_json(out, {"model": loaded.name, "params": params, "table": result.to_dict(orient="records"),
                         "drops": summary.to_dict(orient="records")})
    typer.echo(f"run {run_id}" + (f"; wrote {out}" if out else ""))


@heads_app.command("streaming")
@friendly
@uses_store
def heads_streaming(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    out: Path = typer.Option(..., "--out", help="HEADS.json (score = gate or long-range mass; query heads)"),
    method: str = typer.Option("gate", "--method", help="gate (DuoAttention optimisation) | proxy (long-range mass)"),
    haystack: str = typer.Option("synthetic", "--haystack", help=HAYSTACK_HELP),
    length: int = typer.Option(384, "--length", help="tokens per passkey sample"),
    steps: int = typer.Option(200, "--steps", help="gate optimisation steps"),
    sink: int = typer.Option(16, "--sink"),
    recent: int = typer.Option(64, "--recent"),
    l1: float = typer.Option(0.05, "--l1", help="weight of mean |gate|"),
    lr: float = typer.Option(0.02, "--lr"),
    samples: int = typer.Option(4, "--samples", help="passkey samples for the proxy"),
    retrieval: Path | None = typer.Option(None, "--retrieval", help="HEADS.json of retrieval scores, to correlate"),
    seed: int = typer.Option(0, "--seed"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """Streaming vs retrieval heads: DuoAttention gates or the pattern proxy, with their correlations."""
    from workbench.analyses.heads import read_heads_json, write_heads_json
    from workbench.analyses.retrieval.haystack import read_haystack
    from workbench.analyses.retrieval.streaming import (
        correlations,
        long_range_mass,
        per_kv,
        streaming_head_table,
        train_gates,
    )

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_out(out, ".json")
    if method not in ("gate", "proxy"):
        raise SpecError(f"--method must be gate or proxy, got {method!r}")
    if steps < 1 or length < 64 or sink < 0 or recent < 1:
        raise SpecError("need --steps >= 1, --length >= 64, --sink >= 0, --recent >= 1")
    hay = read_haystack(haystack)
    retrieval_table = read_heads_json(retrieval) if retrieval is not None else None
    loaded = load(model, where)
    lrm = long_range_mass(loaded, hay, length=length, samples=samples, sink=sink, recent=recent, seed=seed)
    gates = None
    if method == "gate":
        gates = train_gates(loaded, hay, length=length, steps=steps, sink=sink, recent=recent, l1=l1, lr=lr, seed=seed)
        table = streaming_head_table(loaded, gates, "gate", "duo-gate", gates.attrs["params"])
    else:
        params = {"length": length, "samples": samples, "sink": sink, "recent": recent, "seed": seed}
        table = streaming_head_table(loaded, per_kv(lrm, "lrm"), "lrm", "long-range-mass", params)
    corr = correlations(gates, lrm, retrieval_table) if (gates is not None or retrieval_table is not None) else None
    params = dict(table.attrs["params"], haystack=hay.source)
    if corr is not None:
        params["correlations"] = corr.to_dict(orient="records")
    arrays = {"lrm": lrm}
    if gates is not None:
        import pandas as pd

        arrays["gates"] = gates
        arrays["history"] = pd.DataFrame(gates.attrs["history"])
    run_id = _store().put_run(f"streaming-{method}", loaded.name, hashlib.sha256(hay.text.encode()).hexdigest()[:16],
                              params=params, head_tables={"heads": table}, arrays=arrays,
                              summary={"correlations": params.get("correlations")}, runtime=record(loaded))
    write_heads_json(out, table, loaded.name, params=params)
    if corr is not None:
        typer.echo(corr.to_string(index=False))
    typer.echo(f"wrote {out}; run {run_id}")


@app.command("influence")
@friendly
@uses_store
def influence(
    model: str = typer.Argument(..., help="model name, HF id or local path"),
    heads: Path = typer.Option(..., "--heads", help="HEADS.json of retrieval scores"),
    docs: Path = typer.Option(..., "--docs", help="a .txt file, a folder of .txt files, or JSONL with 'text'"),
    out: Path = typer.Option(..., "--out", help="SCORES.parquet: doc, domain, tokens, loss_base, loss_masked, influence"),
    fraction: float = typer.Option(0.05, "--fraction", help="mask the top fraction of heads"),
    top: int | None = typer.Option(None, "--top", help="mask the top K heads instead of a fraction"),
    max_tokens: int = typer.Option(1024, "--max-tokens", help="keep the first N tokens of each document"),
    device: Device = DEFAULT_DEVICE,
    dtype: Dtype = DEFAULT_DTYPE,
) -> None:
    """AttentionInfluence: relative loss increase per document with the top retrieval heads made uniform."""
    from workbench.analyses.heads import read_heads_json
    from workbench.analyses.retrieval.influence import attention_influence, read_documents

    where = runtime(device, dtype)  # a missing device fails here, before any work
    _check_out(out, ".parquet")
    if not 0 < fraction <= 1 or (top is not None and top < 1) or max_tokens < 2:
        raise SpecError("need 0 < --fraction <= 1, --top >= 1 and --max-tokens >= 2")
    table = read_heads_json(heads)
    documents = read_documents(docs)
    loaded = load(model, where)
    scores = attention_influence(loaded, table, documents, fraction=fraction, top=top, max_tokens=max_tokens)
    params = {**scores.attrs["params"], "heads": scores.attrs["heads"], "docs": str(docs)}
    digest = hashlib.sha256("".join(documents.text).encode()).hexdigest()[:16]
    run_id = _store().put_run("attention-influence", loaded.name, digest, params=params, arrays={"scores": scores},
                              summary={"documents": len(scores), "mean_influence": float(scores.influence.mean())},
                              runtime=record(loaded))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.parquet")
    scores.to_parquet(tmp, index=False)
    tmp.replace(out)
    typer.echo(f"{len(scores)} documents, mean influence {scores.influence.mean():.4f}; wrote {out}; run {run_id}")
