"""The LoFiT comparison at equal parameter count: base, LoFiT heads, K random heads, K retrieval heads.

Every unit (selection, one training, one evaluation) writes its own file under ``out`` and is skipped
when that file exists, so a long CPU run can be stopped and resumed. Layout::

    out/base.json                              base model on the test split
    out/seed{S}/select/HEADS.json, scales.safetensors, log.json
    out/seed{S}/{lofit|random|retrieval}-k{K}/lofit.json, lofit.safetensors, log.json, eval.json
    out/results.csv, out/summary.csv, out/summary.md
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from workbench.analyses.heads import read_heads_json, top_heads, write_heads_json
from workbench.analyses.lofit.artifact import LofitArtifact, save_scales
from workbench.analyses.lofit.data import load_task
from workbench.analyses.lofit.metrics import evaluate
from workbench.analyses.lofit.train import TrainConfig, random_heads, select_heads, train_offsets
from workbench.jsonfiles import write_json
from workbench.runners.hf import Model
from workbench.seam.spec import SpecError


@dataclass(frozen=True)
class Split:
    path: str
    part: tuple[int, int] | None = None
    limit: int | None = None

    def load(self, task: str):
        return load_task(task, Path(self.path), self.part, self.limit)


@dataclass(frozen=True, kw_only=True)
class ComparisonPlan:
    """What ``run_comparison`` runs; built by the ``lofit-compare`` Step, whose options hold the defaults
    (a None knob keeps ``TrainConfig``'s default for the task)."""

    task: str
    train: Split
    val: Split
    test: Split
    ks: tuple[int, ...]
    seeds: tuple[int, ...]
    select_steps: int | None = None
    train_steps: int | None = None
    batch_size: int
    train_lr: float | None = None  # step-2 learning rate (None: the spec default)
    eval_every: int | None = None
    max_prompt: int | None = None
    max_target: int | None = None
    retrieval_heads: str | None = None  # HEADS.json of `workbench heads retrieval`, when one exists


def _metric_names(task: str) -> list[str]:
    return ["mc1", "mc2"] if task == "truthfulqa" else ["accuracy"]


def _eval_unit(model, plan, items, interventions, path: Path, echo) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    start = time.time()
    result = evaluate(model, plan.task, items, interventions, progress=True)
    result["seconds"] = round(time.time() - start, 1)
    write_json(path, result)
    echo(f"  eval {path.parent.name}: { ({k: round(result[k], 4) for k in _metric_names(plan.task)}) }")
    return result


ADDABLE = ("ks", "seeds")
"""Plan fields a resumed comparison may change: more K values or seeds add units and leave the finished ones
valid. Any other change would mix units trained or scored under different settings."""


def check_resumable(plan: ComparisonPlan, out: Path) -> None:
    """Refuse to resume ``out`` when its ``plan.json`` was written with other settings (besides ks, seeds)."""
    path = Path(out) / "plan.json"
    if not path.is_file():
        return
    before = json.loads(path.read_text())
    now = json.loads(json.dumps(asdict(plan)))
    changed = sorted(k for k in set(before) | set(now) if k not in ADDABLE and before.get(k) != now.get(k))
    if changed:
        raise SpecError(
            f"{out} holds a comparison run with other settings ({', '.join(changed)} differ from its plan.json); "
            "its finished units would be reused. Choose another --out, or remove that folder to start over"
        )


def run_comparison(
    model: Model, plan: ComparisonPlan, out: Path, echo: Callable[[str], None] = print
) -> pd.DataFrame:
    """Run (or resume) every unit of ``plan``; returns one row per (condition, K, seed)."""
    out = Path(out)
    train_items, val_items, test_items = (s.load(plan.task) for s in (plan.train, plan.val, plan.test))
    retrieval = read_heads_json(Path(plan.retrieval_heads)) if plan.retrieval_heads else None
    check_resumable(plan, out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", asdict(plan))
    echo(f"{plan.task}: {len(train_items)} train, {len(val_items)} val, {len(test_items)} test items")
    lengths = {k: v for k, v in (("max_prompt", plan.max_prompt), ("max_target", plan.max_target)) if v}
    rows = []
    base = _eval_unit(model, plan, test_items, [], out / "base.json", echo)
    rows.append(
        {
            "condition": "base",
            "k": 0,
            "seed": None,
            "parameters": 0,
            **{m: base[m] for m in _metric_names(plan.task)},
        }
    )
    for seed in plan.seeds:
        folder = out / f"seed{seed}"
        select_dir = folder / "select"
        if (select_dir / "HEADS.json").exists():
            table = read_heads_json(select_dir / "HEADS.json")
        else:
            config = TrainConfig.defaults(
                plan.task, 1, seed=seed, steps=plan.select_steps, batch_size=plan.batch_size, **lengths
            )
            start = time.time()
            table, scales, log = select_heads(model, train_items, config, progress=True)
            log["seconds"] = round(time.time() - start, 1)
            save_scales(select_dir / "scales.safetensors", scales)
            write_json(select_dir / "log.json", log)
            write_heads_json(select_dir / "HEADS.json", table, model.name)
            echo(f"  seed {seed} selected: top-8 {top_heads(table, 8)}")
        conditions = []
        for k in plan.ks:
            chosen = top_heads(table, k)
            conditions.append(("lofit", k, chosen, [float(s) for s in table["score"].head(k)]))
            conditions.append(("random", k, random_heads(model, k, seed=1000 + seed), None))
            if retrieval is not None:
                conditions.append(("retrieval", k, top_heads(retrieval, k), None))
        for name, k, heads, scores in conditions:
            unit = folder / f"{name}-k{k}"
            if not (unit / "lofit.json").exists():
                config = TrainConfig.defaults(
                    plan.task,
                    2,
                    seed=seed,
                    steps=plan.train_steps,
                    batch_size=plan.batch_size,
                    lr=plan.train_lr,
                    eval_every=plan.eval_every,
                    **lengths,
                )
                start = time.time()
                artifact, log = train_offsets(
                    model,
                    heads,
                    train_items,
                    config,
                    val_items=val_items,
                    scores=scores,
                    progress=True,
                    extra_params={"heads_from": name},
                )
                log["seconds"] = round(time.time() - start, 1)
                write_json(unit / "log.json", log)
                artifact.save(unit)
                echo(
                    f"  seed {seed} {name}-k{k}: trained in {log['seconds']} s, selected step {log.get('selected_step')}"
                )
            artifact = LofitArtifact.load(unit)
            result = _eval_unit(model, plan, test_items, artifact.interventions(), unit / "eval.json", echo)
            rows.append(
                {
                    "condition": name,
                    "k": k,
                    "seed": seed,
                    "parameters": artifact.num_parameters,
                    "selected_step": artifact.params.get("selected_step"),
                    **{m: result[m] for m in _metric_names(plan.task)},
                }
            )
        frame = pd.DataFrame(rows)
        frame.to_csv(out / "results.csv", index=False)
        summarise(frame, plan.task).to_csv(out / "summary.csv", index=False)
    frame = pd.DataFrame(rows)
    summary = summarise(frame, plan.task)
    (out / "summary.md").write_text(
        summary_markdown(summary, plan.task) + "\n" + selection_overlap(out, plan) + "\n"
    )
    return frame


def summarise(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each metric, per (condition, K)."""
    metrics = _metric_names(task)
    grouped = frame.groupby(["condition", "k"], sort=False)
    summary = grouped[metrics].agg(["mean", "std"])
    summary.columns = [f"{m}_{s}" for m, s in summary.columns]
    summary["seeds"] = grouped.size()
    summary["parameters"] = grouped["parameters"].first()
    return summary.reset_index()


def summary_markdown(summary: pd.DataFrame, task: str) -> str:
    metrics = _metric_names(task)
    header = "| condition | K | parameters | seeds | " + " | ".join(metrics) + " |"
    lines = [header, "|" + "---|" * (4 + len(metrics))]
    for row in summary.itertuples(index=False):
        values = []
        for m in metrics:
            mean, std = getattr(row, f"{m}_mean"), getattr(row, f"{m}_std")
            values.append(f"{mean:.3f}" + ("" if pd.isna(std) else f" ± {std:.3f}"))
        lines.append(
            f"| {row.condition} | {row.k} | {row.parameters} | {row.seeds} | " + " | ".join(values) + " |"
        )
    return "\n".join(lines)


def selection_overlap(out: Path, plan: ComparisonPlan) -> str:
    """Jaccard overlap of the top-K LoFiT heads between seeds (is the selection stable?)."""
    tables = {}
    for seed in plan.seeds:
        path = Path(out) / f"seed{seed}" / "select" / "HEADS.json"
        if path.exists():
            tables[seed] = read_heads_json(path)
    seeds = sorted(tables)
    lines = []
    for k in plan.ks:
        for i, a in enumerate(seeds):
            for b in seeds[i + 1 :]:
                x, y = set(top_heads(tables[a], k)), set(top_heads(tables[b], k))
                lines.append(f"top-{k} Jaccard(seed {a}, seed {b}) = {len(x & y) / len(x | y):.3f}")
    return "\n".join(lines)


