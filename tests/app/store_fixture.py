"""A results store built from ``tiny-gqa`` runs, one per dashboard page.

Made by the real jobs: ``rhythm_job``, ``workbench heads sinks``, ``workbench heads retrieval`` /
``validate retrieval`` / ``eval niah``, and ``save_capture`` as ``run_demo`` calls it (on a shorter text:
the demo's text is longer than tiny-gqa's window). Written by hand with the ``put_run`` schema of the real
job, because the real one is too slow for a test on 2 CPUs: a calibration run (``summary["interventions"]``
as ``workbench calibrate act`` stores it) and a binding run (as ``workbench binding`` stores it, for the
committed ``tiny-vit-dino-s0``, with made-up probe numbers).

Run as a script to build one for a manual look: ``python tests/app/store_fixture.py /tmp/store``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
MODEL = "tiny-gqa"


def _cli(args: list[str]) -> None:
    from typer.testing import CliRunner

    from workbench.cli import app

    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise RuntimeError(f"workbench {' '.join(args)} failed: {result.output}")


def demo_run(store, characters: int = 600) -> str:
    """The store record of ``run_demo`` (its sample text is longer than tiny-gqa's window, so cut)."""
    from workbench.analyses.demo import classify_heads, sample_text
    from workbench.runners.hf import load_model
    from workbench.seam.spec import CaptureSpec
    from workbench.store.captures import save_capture

    model = load_model(MODEL)
    ids = model.encode(sample_text()[:characters])
    _, capture = model.run(ids, CaptureSpec(key_statistics=("received",), pooled_cells=128))
    table = capture.head_table()
    labels = classify_heads(table)
    table["label"] = [labels[(r.layer, r.head)] for r in table.itertuples()]
    return save_capture(store, capture, model=model.name, input_ids=ids, kind="demo", head_table=table)


def rhythm_run(work: Path, store) -> str:
    from workbench.analyses.rhythm.problems import Problem
    from workbench.pipeline.steps.rhythm import rhythm_job
    from workbench.runners.hf import load_model

    # prompts on which the random tiny model writes more than one token before its end token
    questions = ("A shop sells 3 pens for 2 dollars. How much do 12 pens cost?", "hello there, how are you")
    summary = rhythm_job(
        load_model(MODEL),
        [Problem(f"q{i}", question, "#### 8") for i, question in enumerate(questions)],
        work / "rhythm",
        max_new_tokens=48,
        instruction="",
        shuffles=20,
        progress=False,
        store=store,
        echo=lambda *_: None,
    )
    return summary["run_id"]


def sinks_run(work: Path) -> None:
    text = work / "sinks.txt"
    text.write_text((REPO / "workbench" / "data" / "sample.txt").read_text())
    out = ["--out", str(work / "SINKS.json"), "--window", "32", "--max-windows", "4"]
    _cli(["heads", "sinks", MODEL, "--text", str(text), *out])


def retrieval_runs(work: Path) -> None:
    heads, needles = work / "HEADS.json", work / "needles.jsonl"
    needles.write_text(
        '{"needle": "The secret code is 7 3 4 1 9.", "question": "What is the secret code?", '
        '"answer": "7 3 4 1 9"}\n'
    )
    grid = ["--needles", str(needles), "--lengths", "256", "--max-new-tokens", "4"]
    mask = ["--mask-heads", str(heads), "--top", "2", "--depths", "50"]
    check = ["--heads", str(heads), "--top", "1", "--seeds", "0", "--exclude-top", "2", "--depths", "50"]
    _cli(["heads", "retrieval", MODEL, "--out", str(heads), "--depths", "0,100", *grid])
    _cli(["eval", "niah", MODEL, "--out", str(work / "niah.json"), *mask, *grid])
    _cli(["validate", "retrieval", MODEL, *check, *grid])


def calibration_run(store) -> str:
    from workbench.analyses.calibration.interventions import act

    items = [i.to_dict() for i in act([(0, 1), (1, 2)], threshold=0.1, beta=0.4)]
    summary = {
        "task": "sentiment",
        "heads": [[0, 1], [1, 2]],
        "interventions": items,
        "calibration": {"baseline": 0.5, "calibrated": 0.5},
    }
    return store.put_run("calibrate-act", MODEL, "fixture", params={"fixture": True}, summary=summary)


def binding_run(store, seed: int = 0) -> str:
    """The record ``workbench binding tiny-vit-dino-s0 --scenes 8 --layers 0,2,4`` writes (same arrays,
    columns, summary and params), with made-up probe numbers: the real job takes minutes on 2 CPUs."""
    from workbench.analyses.binding import BindingConfig
    from workbench.analyses.binding.scenes import GENERATOR_VERSION, scene_config_for
    from workbench.analyses.heads import make_head_table

    rng = np.random.default_rng(seed)
    rows = []
    for layer in (0, 2, 4):
        for probe in ("linear", "diagonal", "quadratic", "lowrank", "cosine", "pointwise-class"):
            accuracy = 0.55 + 0.04 * layer + (0.1 if probe == "quadratic" else 0.0)
            rows.append(
                {
                    "layer": layer,
                    "probe": probe,
                    "accuracy": accuracy,
                    "auroc": accuracy + 0.05,
                    "same_class_accuracy": accuracy - 0.05,
                    "same_class_auroc": accuracy,
                    "hard_accuracy": accuracy - 0.1,
                    "n_pairs": 1174,
                    "n_same_class": 68,
                    "n_hard": 24,
                    "val_accuracy": accuracy,
                    "val_same_class_accuracy": float("nan"),
                }
            )
    heads = make_head_table(
        [
            {
                "layer": layer,
                "head": head,
                "binding_auroc": float(rng.uniform(0.4, 0.8)),
                "same_class_auroc": float("nan"),
            }
            for layer in range(6)
            for head in range(3)
        ],
        "binding-attention-auroc",
        {"scenes": 2},
        score="binding_auroc",
    )
    config = BindingConfig(scenes=8, layers=(0, 2, 4), epochs=1, head_scenes=2, ablation_ranks=(), seed=seed)
    summary = {
        "model": "tiny-vit-dino-s0",
        "scene_config": scene_config_for(64).to_dict(),
        "generator_version": GENERATOR_VERSION,
        "best_layer": 4,
        "train_pairs": 1448,
        "test_pairs": 1174,
        "test_same_class_pairs": 68,
        "seconds": 93.0,
    }
    return store.put_run(
        "binding",
        "tiny-vit-dino-s0",
        f"fixture-{seed}",
        params=config.to_dict(),
        head_tables={"heads": heads},
        arrays={"probes": pd.DataFrame(rows), "ablation": pd.DataFrame()},
        summary=summary,
    )


def build_store(root: Path, work: Path) -> dict[str, str]:
    """Fill ``root`` (an empty folder) with one run per page; returns a few run ids."""
    from workbench.store import Store

    previous = os.environ.get("WORKBENCH_RESULTS")
    os.environ["WORKBENCH_RESULTS"] = str(root)
    try:
        store = Store(root)
        work.mkdir(parents=True, exist_ok=True)
        ids = {"demo": demo_run(store), "rhythm": rhythm_run(work, store)}
        sinks_run(work)
        retrieval_runs(work)
        ids["calibration"] = calibration_run(store)
        ids["binding"] = binding_run(store)
        (root / "fixture-ids.json").write_text(json.dumps(ids))
        return ids
    finally:
        if previous is None:
            os.environ.pop("WORKBENCH_RESULTS", None)
        else:
            os.environ["WORKBENCH_RESULTS"] = previous


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    print(build_store(target, target.parent / (target.name + "-work")))
