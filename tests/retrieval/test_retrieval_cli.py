"""The retrieval CLI on tiny-gqa: outputs, store records, and one-line errors that write nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from workbench.cli import app

GRID = ["--lengths", "260", "--depths", "50", "--max-new-tokens", "3"]


@pytest.fixture()
def cli(store):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    invoke.store = store
    return invoke


def test_heads_eval_validate(cli, tmp_path):
    heads = tmp_path / "HEADS.json"
    result = cli("heads", "retrieval", "tiny-gqa", "--out", heads, *GRID)
    assert result.exit_code == 0, result.output
    data = json.loads(heads.read_text())
    assert data["model"] == "tiny-gqa" and data["method"] == "retrieval" and len(data["heads"]) == 8
    scores = [h["score"] for h in data["heads"]]
    assert scores == sorted(scores, reverse=True) and {"layer", "head", "score"} <= set(data["heads"][0])
    assert data["params"]["lengths"] == [260] and data["params"]["haystack"] == "synthetic"
    assert "retrieval-heads" in set(cli.store.runs().kind)

    out = tmp_path / "RESULT.json"
    result = cli("eval", "niah", "tiny-gqa", "--mask-heads", heads, "--mask-random", 2, "--seed", 1,
                 "--exclude-top", 3, "--mask-mode", "zero", "--out", out, *GRID)
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert {"success_rate", "mean_rouge_recall", "runs"} <= set(res) and len(res["runs"]) == 3
    ranked = [(h["layer"], h["head"]) for h in data["heads"][:3]]
    assert res["params"]["mask"]["kind"] == "random" and len(res["params"]["mask"]["heads"]) == 2
    assert not {tuple(h) for h in res["params"]["mask"]["heads"]} & set(ranked)

    table = tmp_path / "causal.json"
    result = cli("validate", "retrieval", "tiny-gqa", "--heads", heads, "--top", 2, "--seeds", "0,1",
                 "--exclude-top", 3, "--out", table, "--lengths", 260, "--depths", "10,90", "--max-new-tokens", 2)
    assert result.exit_code == 0, result.output
    causal = json.loads(table.read_text())
    assert [r["condition"] for r in causal["table"]] == ["none", "top-2", "random-2", "random-2"]
    assert all(r["num_runs"] == 6 for r in causal["table"])
    assert causal["params"]["held_out"]["held_out"]  # built-in held-out needles, depths 10/90 vs 50
    assert "retrieval-validate" in set(cli.store.runs().kind)


def test_streaming_and_influence(cli, tmp_path):
    heads = tmp_path / "S.json"
    result = cli("heads", "streaming", "tiny-gqa", "--method", "gate", "--steps", 2, "--length", 700,
                 "--samples", 1, "--sink", 4, "--recent", 32, "--out", heads)
    assert result.exit_code == 0, result.output
    data = json.loads(heads.read_text())
    assert data["method"] == "duo-gate" and len(data["heads"]) == 8
    assert {c["b"] for c in data["params"]["correlations"]} == {"lrm"}
    proxy = tmp_path / "P.json"
    assert cli("heads", "streaming", "tiny-gqa", "--method", "proxy", "--length", 700, "--samples", 1,
               "--out", proxy).exit_code == 0
    assert json.loads(proxy.read_text())["method"] == "long-range-mass"

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "a", "text": "One short document about cats."}\n{"id": "b", "text": "Another, on dogs."}\n')
    scores = tmp_path / "SCORES.parquet"
    result = cli("influence", "tiny-gqa", "--heads", proxy, "--docs", docs, "--top", 2, "--out", scores)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(scores)
    assert frame.doc.tolist() == ["a", "b"] and {"loss_base", "loss_masked", "influence"} <= set(frame.columns)


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "niah", "tiny-gqa", "--top", "3"], "--mask-heads"),
        (["eval", "niah", "tiny-gqa", "--mask-random", "2"], "--exclude-top 0"),
        (["eval", "niah", "tiny-gqa", "--mask-mode", "half"], "--mask-mode"),
        (["eval", "niah", "tiny-gqa", "--depths", "0,150"], "percentages"),
        (["eval", "niah", "tiny-gqa", "--needles", "missing.jsonl"], "does not exist"),
        (["heads", "retrieval", "tiny-gqa", "--haystack", "nowhere.txt"], "does not exist"),
        (["heads", "streaming", "tiny-gqa", "--method", "magic"], "gate or proxy"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(cli, tmp_path, args, message):
    out = tmp_path / "out.json"
    result = cli(*args, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()
