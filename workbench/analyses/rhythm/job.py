"""The whole rhythm job behind ``workbench rhythm``: problems in, ``tokens.parquet`` + ``summary.json``
(+ ``heads.parquet``, ``rhythm.html``) out, and the run recorded in the store."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from workbench.analyses.rhythm.credit import RhythmParams
from workbench.analyses.rhythm.pipeline import capture_spec, default_layers, perturbation_test, run_rhythm
from workbench.analyses.rhythm.problems import INSTRUCTION, Problem
from workbench.analyses.rhythm.summary import head_group_table, markdown_tables, summarize, token_table
from workbench.runners.hf import InputError


def _write_parquet(frame, path: Path) -> None:
    tmp = path.with_suffix(".tmp.parquet")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def rhythm_job(
    model,
    problems: Sequence[Problem],
    out: Path,
    *,
    max_new_tokens: int = 128,
    params: RhythmParams | None = None,
    layers: Sequence[int] | None = None,
    instruction: str = INSTRUCTION,
    batch_size: int = 8,
    shuffles: int = 1000,
    seed: int = 0,
    perturb: bool = False,
    continuation: int = 32,
    progress: bool = True,
    store=None,
    echo=print,
) -> dict:
    """Run the rhythm analysis and write its outputs under ``out``; returns the summary."""
    from workbench.cli.common import write_json
    from workbench.devices import run_record
    from workbench.store import content_hash, default_store

    params = params or RhythmParams()
    layers = tuple(layers) if layers is not None else default_layers(model)
    capture_spec(layers, params).validate_for(model.shape.num_layers, model.shape.num_heads)
    started = time.perf_counter()
    responses, prompts = run_rhythm(
        model,
        problems,
        max_new_tokens=max_new_tokens,
        params=params,
        layers=layers,
        instruction=instruction,
        batch_size=batch_size,
        progress=progress,
    )
    if not responses:
        raise InputError("the model produced no response of 2 or more tokens; raise --max-new-tokens")
    analysed = time.perf_counter()
    perturbation = None
    if perturb:
        from tqdm.auto import tqdm

        with tqdm(total=2 * len(responses), desc="perturb", unit="swap", disable=not progress) as bar:
            perturbation = perturbation_test(
                model,
                responses,
                prompts,
                continuation=continuation,
                seed=seed,
                batch_size=batch_size,
                progress=bar,
            )
    heads = head_group_table(responses, layers, params)
    summary = summarize(
        responses,
        layers=layers,
        params=params,
        shuffles=shuffles,
        seed=seed,
        perturbation=perturbation,
        heads=heads,
    )
    summary.update(
        {
            "model": model.name,
            "problems": len(problems),
            "skipped_problems": sorted({p.id for p in problems} - {r.problem for r in responses}),
            "max_new_tokens": max_new_tokens,
            "instruction": instruction,
            "seed": seed,
            "shuffles": shuffles,
            "seconds": {
                "generate_and_capture": round(analysed - started, 1),
                "total": round(time.perf_counter() - started, 1),
            },
            "responses_text": {r.problem: r.text for r in responses},
        }
    )
    tokens = token_table(responses)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(tokens, out / "tokens.parquet")
    _write_parquet(heads, out / "heads.parquet")
    write_json(out / "summary.json", summary)
    tmp = out / "summary.md.tmp"
    tmp.write_text(markdown_tables(summary) + "\n")
    tmp.replace(out / "summary.md")
    try:
        from workbench.analyses.rhythm.plot import rhythm_figure

        html = rhythm_figure(tokens).to_html(include_plotlyjs="cdn", full_html=True)
        (out / "rhythm.html").write_text(html)
    except ImportError:  # pragma: no cover - plotly is a dependency, but the data matter more
        pass
    store = store or default_store()
    run_params = {
        "max_new_tokens": max_new_tokens,
        "instruction": instruction,
        "layers": list(layers),
        "seed": seed,
        "shuffles": shuffles,
        "perturb": perturb,
        "continuation": continuation,
        **params.to_dict(),
    }
    input_hash = content_hash([p.question for p in problems])
    run_id = store.put_run(
        "rhythm",
        model.name,
        input_hash,
        spec=capture_spec(layers, params).to_dict(),
        params=run_params,
        head_tables={"heads": heads},
        arrays={"tokens": tokens},
        summary=summary,
        runtime=run_record(model),
    )
    summary["run_id"] = run_id
    echo(f"wrote {out}/tokens.parquet ({len(tokens)} tokens), summary.json; run {run_id}")
    return summary
