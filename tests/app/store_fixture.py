"""A results store built from ``tiny-gqa`` runs, one per dashboard page.

Made by the real jobs where they exist (``run_demo``, ``rhythm_job``, ``workbench heads sinks``,
``workbench heads retrieval`` / ``validate retrieval`` / ``eval niah``). Written by hand, with the same
``put_run`` schema as the real job: a calibration run (``summary["interventions"]``, as
``workbench calibrate act`` stores it) and a binding run (no binding job exists yet; the schema is the
one ``app/views/binding.py`` reads: arrays ``probes``, ``scenes``, ``same_object``).

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
    from workbench.analyses.rhythm.job import rhythm_job
    from workbench.analyses.rhythm.problems import Problem
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
    _cli(
        [
            "heads",
            "sinks",
            MODEL,
            "--text",
            str(text),
            "--out",
            str(work / "SINKS.json"),
            "--window",
            "32",
            "--max-windows",
            "4",
        ]
    )


def retrieval_runs(work: Path) -> None:
    heads, needles = work / "HEADS.json", work / "needles.jsonl"
    needles.write_text(
        '{"needle": "The secret code is 7 3 4 1 9.", "question": "What is the secret code?", '
        '"answer": "7 3 4 1 9"}\n'
    )
    grid = ["--needles", str(needles), "--lengths", "256", "--depths", "0,100", "--max-new-tokens", "4"]
    _cli(["heads", "retrieval", MODEL, "--out", str(heads), *grid])
    _cli(
        [
            "eval",
            "niah",
            MODEL,
            "--out",
            str(work / "niah.json"),
            "--mask-heads",
            str(heads),
            "--top",
            "2",
            *grid,
        ]
    )
    _cli(
        [
            "validate",
            "retrieval",
            MODEL,
            "--heads",
            str(heads),
            "--top",
            "1",
            "--seeds",
            "0",
            "--exclude-top",
            "2",
            *grid,
        ]
    )


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
    """Two 32x32 scenes of two squares, 8-pixel patches, probe tables for two probes over 3 layers."""
    rng = np.random.default_rng(seed)
    side, patch = 32, 8
    pixels, maps, probes = [], [], []
    for scene in range(2):
        instance = np.zeros((side, side), dtype=int)
        instance[0:16, 0:16] = 1
        instance[16:32, 8:32] = 2
        colours = {0: (30, 30, 30), 1: (200, 60, 60), 2: (60, 60 + 80 * scene, 200)}
        ys, xs = np.mgrid[0:side, 0:side]
        rgb = np.array([colours[i] for i in instance.ravel()])
        pixels.append(
            pd.DataFrame(
                {
                    "scene": scene,
                    "y": ys.ravel(),
                    "x": xs.ravel(),
                    "r": rgb[:, 0],
                    "g": rgb[:, 1],
                    "b": rgb[:, 2],
                    "instance": instance.ravel(),
                }
            )
        )
        labels = instance[::patch, ::patch].ravel()
        for layer in (0, 2, 4):
            for query in range(len(labels)):
                same = (labels == labels[query]).astype(float)
                value = np.clip(same * (0.5 + 0.1 * layer) + rng.uniform(0, 0.2, len(labels)), 0, 1)
                maps.append(
                    pd.DataFrame(
                        {
                            "scene": scene,
                            "layer": layer,
                            "query_patch": query,
                            "patch": np.arange(len(labels)),
                            "value": value,
                        }
                    )
                )
    for probe in ("linear", "quadratic"):
        for layer in (0, 2, 4):
            probes.append(
                {
                    "model": "dino",
                    "probe": probe,
                    "layer": layer,
                    "accuracy": 0.6 + 0.05 * layer + (0.1 if probe == "quadratic" else 0.0),
                }
            )
    return store.put_run(
        "binding",
        "tiny-vit",
        f"fixture-{seed}",
        params={"fixture": True},
        arrays={
            "probes": pd.DataFrame(probes),
            "scenes": pd.concat(pixels, ignore_index=True),
            "same_object": pd.concat(maps, ignore_index=True),
        },
        summary={"patch_size": patch, "scenes": 2},
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
