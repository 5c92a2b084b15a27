"""The whole rhythm analysis behind ``workbench rhythm`` and the pipeline's ``rhythm`` step: problems in,
one run record out (head groups, per-token table, summary), and its files (``tokens.parquet``,
``heads.parquet``, ``summary.json``, ``summary.md``, ``rhythm.html``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from workbench.analyses.rhythm.credit import RhythmParams
from workbench.analyses.rhythm.pipeline import capture_spec, default_layers, perturbation_test, run_rhythm
from workbench.analyses.rhythm.problems import Problem
from workbench.analyses.rhythm.summary import head_group_table, markdown_tables, summarize, token_table
from workbench.jsonfiles import write_json
from workbench.runners.hf import InputError
from workbench.store.record import StepOutput, write_parquet


def rhythm_record(
    model,
    problems: Sequence[Problem],
    *,
    max_new_tokens: int,
    params: RhythmParams,
    layers: Sequence[int] | None,
    instruction: str,
    batch_size: int,
    shuffles: int,
    seed: int,
    perturb: bool,
    continuation: int,
    progress: bool = True,
) -> StepOutput:
    """Run the rhythm analysis; its run record (the Step ``rhythm`` passes every option)."""
    from workbench.store.store import content_hash

    layers = tuple(layers) if layers is not None else default_layers(model)
    capture_spec(layers, params).validate_for(model.shape.num_layers, model.shape.num_heads)
    started = time.perf_counter()
    responses, prompts = run_rhythm(
        model, problems, max_new_tokens=max_new_tokens, params=params, layers=layers, instruction=instruction,
        batch_size=batch_size, progress=progress,
    )  # fmt: skip
    if not responses:
        raise InputError("the model produced no response of 2 or more tokens; raise --max-new-tokens")
    analysed = time.perf_counter()
    perturbation = None
    if perturb:
        from tqdm.auto import tqdm

        with tqdm(total=2 * len(responses), desc="perturb", unit="swap", disable=not progress) as bar:
            perturbation = perturbation_test(
                model, responses, prompts, continuation=continuation, seed=seed, batch_size=batch_size, progress=bar
            )
    heads = head_group_table(responses, layers, params)
    summary = summarize(
        responses, layers=layers, params=params, shuffles=shuffles, seed=seed, perturbation=perturbation, heads=heads
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
    summary.setdefault("layers", list(layers))
    summary.setdefault("groups", {k: int(v) for k, v in heads["group"].value_counts().sort_index().items()})
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
    return StepOutput(
        head_tables={"heads": heads},
        arrays={"tokens": token_table(responses)},
        summary=summary,
        kind="rhythm",
        input_hash=content_hash([p.question for p in problems]),
        spec=capture_spec(layers, params).to_dict(),
        params=run_params,
    )


def write_rhythm_files(out: Path, record: StepOutput, summary: dict | None = None) -> list[Path]:
    """The rhythm record's files under ``out``: tokens.parquet, heads.parquet, summary.json/.md, rhythm.html."""
    out = Path(out)
    summary = summary if summary is not None else record.summary
    tokens = record.table("tokens")
    files = [write_parquet(tokens, out / "tokens.parquet"), write_parquet(record.table("heads"), out / "heads.parquet")]
    write_json(out / "summary.json", summary)
    tmp = out / "summary.md.tmp"
    tmp.write_text(markdown_tables(summary) + "\n")
    tmp.replace(out / "summary.md")
    files += [out / "summary.json", out / "summary.md"]
    try:
        from workbench.analyses.rhythm.plot import rhythm_figure

        (out / "rhythm.html").write_text(rhythm_figure(tokens).to_html(include_plotlyjs="cdn", full_html=True))
        files.append(out / "rhythm.html")
    except ImportError:  # pragma: no cover - plotly is a dependency, but the data matter more
        pass
    return files
