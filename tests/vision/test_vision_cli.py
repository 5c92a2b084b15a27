"""``workbench binding``: the tables it writes, the run it records, and one-line errors on bad input."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from workbench.cli import app

CHECKPOINT = "workbench/data/vit_checkpoints/tiny-vit-mae-s0.safetensors"


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[2])
    return tmp_path


def test_binding_writes_tables(results):
    out = results / "binding"
    args = ["binding", CHECKPOINT, "--out", str(out), "--scenes", "8", "--epochs", "2", "--layers", "0,6",
            "--probes", "linear,quadratic", "--head-scenes", "2", "--ranks", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    probes = pd.read_parquet(out / "probes.parquet")
    assert {"layer", "probe", "accuracy", "auroc", "same_class_accuracy"} <= set(probes.columns)
    names = set(probes.probe)
    assert {"linear", "quadratic", "cosine", "pointwise-class", "random-init:quadratic", "pixels:quadratic"} <= names
    assert set(probes[probes.probe == "quadratic"].layer) == {0, 6}
    assert probes.accuracy.between(0, 1).all()
    heads = pd.read_parquet(out / "heads.parquet")
    assert {"layer", "head", "binding_auroc"} <= set(heads.columns) and len(heads) == 6 * 3
    assert heads.binding_auroc.between(0, 1).all()
    ablation = pd.read_parquet(out / "ablation.parquet")
    assert set(ablation.basis) == {"binding", "random", "none"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_layer"] in (0, 6) and summary["test_pairs"] > 0
    # per-scene same-class counts add back up to each probe's same-class accuracy and pair count
    scenes = pd.read_parquet(out / "scenes.parquet")
    totals = scenes.groupby(["layer", "probe"])[["n_same_class", "correct_same_class"]].sum()
    merged = probes.set_index(["layer", "probe"]).join(totals, how="inner", rsuffix="_scenes")
    assert len(merged) == len(probes)
    assert (merged.n_same_class_scenes == merged.n_same_class).all()
    assert (merged.n_same_class == summary["test_same_class_pairs"]).all()
    assert ((merged.correct_same_class / merged.n_same_class - merged.same_class_accuracy).abs() < 1e-9).all()
    assert scenes.scene.nunique() > 1
    from workbench.store import default_store

    runs = default_store().runs(kind="binding")
    assert len(runs) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "9"], "out of range"),
        (["--probes", "cubic"], "unknown probe"),
        (["--scenes", "2"], "at least 8"),
    ],
)
def test_binding_bad_input(results, args, message):
    out = results / "never"
    result = CliRunner().invoke(app, ["binding", CHECKPOINT, "--out", str(out), *args])
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()


def test_binding_unknown_model(results):
    result = CliRunner().invoke(app, ["binding", "no-such-vit", "--out", str(results / "x")])
    assert result.exit_code == 2 and "dinov2-s14" in result.output


def test_models_lists_the_shipped_tiny_vits_without_loading_vision_code():
    """The tiny-ViT names come from the package data at registry import: no torch, no runner, no binding analysis (the CLI may read light defaults such as the NIAH grid)."""
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from workbench.cli import app; "
        "out = CliRunner().invoke(app, ['models']).output; "
        "assert all(f'tiny-vit-{o}-s{s}' in out for o in ('dino', 'mae', 'supervised') for s in (0, 1)), out; "
        "heavy = [m for m in sys.modules if m.startswith(('torch', 'workbench.runners', 'workbench.analyses.binding'))]; "
        "assert not heavy, heavy; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
