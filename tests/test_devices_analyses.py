"""Every model-loading command end to end on tiny models in half precision (CPU), so a tensor created in
float32 or on the wrong device inside an analysis fails here; the same chain runs on CUDA under the `gpu`
marker. Each run must record the dtype (and device) it ran with."""

import json

import pytest
import torch
from typer.testing import CliRunner

from workbench.cli import app

runner = CliRunner()


def chain(tmp_path):
    """(name, args, output) in dependency order; small settings for the tiny models."""
    text = tmp_path / "text.txt"
    text.write_text("The keeper wrote the name of every ship in his ledger. " * 12)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "model: tiny-gqa\ndata: {corpus: {texts: ['The keeper wrote the name of every ship.', 'The ledger grew.']}}\n"
        "steps:\n  - {id: capture, step: capture, data: corpus}\n  - {id: far, step: select, rule: {of: capture, by: mean_distance, top_k: 2}}\n"
        "  - {id: check, step: validate, heads: far, data: corpus}\n"
    )
    options = tmp_path / "options.jsonl"  # options share their first byte: scored in options mode
    options.write_text("".join(json.dumps({"id": i, "prompt": f"Is {i} even?", "options": [" yes, it is", " no, it is not"],
                                           "answer": i % 2}) + "\n" for i in range(6)))
    labels = tmp_path / "labels.jsonl"  # distinct first tokens: label mode
    labels.write_text("".join(json.dumps({"id": i, "prompt": f"Is {i} even? Answer A or B:", "options": ["A", "B"],
                                          "answer": i % 2}) + "\n" for i in range(6)))
    o = tmp_path
    return [
        ("capture", ["capture", "tiny-gqa", "--text", text, "--out", o / "c.parquet", "--window", "96"], o / "c.parquet"),
        ("heads sinks", ["heads", "sinks", "tiny-gqa", "--text", text, "--out", o / "s.json", "--window", "32", "--max-windows", "2"], o / "s.json"),
        ("heads retrieval", ["heads", "retrieval", "tiny-gqa", "--out", o / "h.json", "--lengths", "256", "--depths", "50", "--max-new-tokens", "4"], o / "h.json"),
        ("eval niah", ["eval", "niah", "tiny-gqa", "--out", o / "n.json", "--lengths", "256", "--depths", "50", "--max-new-tokens", "4",
                       "--mask-heads", o / "h.json", "--top", "2", "--mask-mode", "mean"], o / "n.json"),
        ("validate retrieval", ["validate", "retrieval", "tiny-gqa", "--heads", o / "h.json", "--top", "1", "--seeds", "0",
                                "--exclude-top", "1", "--lengths", "256", "--depths", "50", "--max-new-tokens", "4", "--out", o / "v.json"], o / "v.json"),
        ("heads streaming", ["heads", "streaming", "tiny-gqa", "--out", o / "st.json", "--length", "640", "--steps", "2", "--samples", "1",
                             "--sink", "4", "--recent", "16"], o / "st.json"),
        ("influence", ["influence", "tiny-gqa", "--heads", o / "h.json", "--docs", text, "--out", o / "i.parquet", "--top", "2",
                       "--max-tokens", "64"], o / "i.parquet"),
        ("calibrate act", ["calibrate", "act", "tiny-gqa", "--task", options, "--out", o / "act.json", "--limit", "4", "--budget", "1", "--candidates", "layer",
                           "--layers", "0,1", "--batch-size", "3"], o / "act.json"),
        ("calibrate zerotuning", ["calibrate", "zerotuning", "tiny-gqa", "--task", labels, "--out", o / "zt.json", "--limit", "4", "--budget", "1",
                                  "--candidates", "layer", "--batch-size", "3"], o / "zt.json"),
        ("eval task", ["eval", "task", "tiny-gqa", "--task", options, "--limit", "4", "--bootstrap", "20", "--out", o / "e.json", "--intervention", o / "zt.json",
                       "--batch-size", "3"], o / "e.json"),
        ("rhythm", ["rhythm", "tiny-gqa", "--out", o / "r", "--limit", "2", "--max-new-tokens", "24", "--instruction", "", "--shuffles", "5"], o / "r" / "summary.json"),
        ("lofit select", ["lofit", "select", "tiny-gqa", "--task", "clutrr", "--out", o / "ls", "--limit", "2", "--steps", "1", "--batch-size", "2"],
         o / "ls" / "HEADS.json"),
        ("lofit train", ["lofit", "train", "tiny-gqa", "--task", "clutrr", "--out", o / "lt", "--heads", o / "ls" / "HEADS.json", "--k", "2",
                         "--limit", "2", "--steps", "1", "--batch-size", "2"], o / "lt" / "lofit.json"),
        ("lofit eval", ["lofit", "eval", "tiny-gqa", "--task", "clutrr", "--out", o / "le.json", "--lofit", o / "lt", "--limit", "2"], o / "le.json"),
        ("binding", ["binding", "tiny-vit-supervised-s0", "--out", o / "b", "--scenes", "8", "--epochs", "1", "--head-scenes", "2",
                     "--probes", "linear", "--ranks", "", "--no-baselines", "--layers", "1,2"], o / "b" / "summary.json"),
        ("pipeline run", ["pipeline", "run", pipeline, "--out", o / "p"], o / "p" / "summary.json"),
    ]


def run_chain(tmp_path, monkeypatch, device: str, dtype: str):
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    for name, args, output in chain(tmp_path):
        result = runner.invoke(app, [str(a) for a in args] + ["--device", device, "--dtype", dtype])
        assert result.exit_code == 0, f"`workbench {name}` with --dtype {dtype} failed:\n{result.output}\n{result.exception!r}"
        assert output.exists(), name
    listed = json.loads(runner.invoke(app, ["runs", "--json"]).output)
    assert {r["dtype"] for r in listed} == {dtype}, {(r["kind"], r["dtype"]) for r in listed}
    return listed


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_every_command_runs_in_half_precision_on_cpu(tmp_path, monkeypatch, dtype):
    listed = run_chain(tmp_path, monkeypatch, "cpu", dtype)
    assert {r["device"] for r in listed} == {"cpu"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_command_runs_on_cuda(tmp_path, monkeypatch):
    listed = run_chain(tmp_path, monkeypatch, "cuda", "bfloat16")
    assert {r["device"] for r in listed} == {"cuda:0"}
    captures = [r for r in listed if r["kind"] == "capture"]
    assert captures and "triton" in captures[0]["backend"], captures  # the kernels ran (not only the PyTorch path)
