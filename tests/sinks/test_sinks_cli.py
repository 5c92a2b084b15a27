"""The CLI: heads sinks, calibrate act|zerotuning, eval task (tiny model, tiny task file)."""

import json
import math

from typer.testing import CliRunner

from workbench.cli import app

runner = CliRunner()


def task_file(tmp_path):
    path = tmp_path / "toy.jsonl"
    rows = []
    for k in range(6):
        split = "calibration" if k < 3 else "test"
        rows.append({"id": f"q{k}", "split": split, "prompt": f"Is {k} even? Answer:", "options": [" yes", " no"], "answer": k % 2})
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_heads_sinks_writes_the_report(tmp_path, store, sample_text):
    text = tmp_path / "text.txt"
    text.write_text(sample_text)
    out = tmp_path / "SINKS.json"
    result = runner.invoke(app, ["heads", "sinks", "tiny-gqa", "--text", str(text), "--window", "32", "--max-windows", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {"sink_1", "sink_k", "heads", "hidden_sinks", "massive_dims"} <= set(report)
    assert len(report["sink_k"]) == 32 and report["sink_k"][0] == report["sink_1"]
    assert report["params"]["windows"] == 4 and len(report["heads"]["heads"]) == 8
    assert {"layer", "head", "score"} <= set(report["heads"]["heads"][0])
    assert len(store.runs(kind="sinks")) == 1


def test_heads_sinks_refuses_bad_input_and_writes_nothing(tmp_path, store):
    empty = tmp_path / "empty.txt"
    empty.write_text("   ")
    out = tmp_path / "SINKS.json"
    for args in (["--text", str(empty)], ["--text", str(tmp_path / "missing.txt")],
                 ["--text", str(empty), "--window", "1"]):
        result = runner.invoke(app, ["heads", "sinks", "tiny-gqa", *args, "--out", str(out)])
        assert result.exit_code == 2 and "error:" in result.output
        assert not out.exists()
    short = tmp_path / "short.txt"
    short.write_text("too short")
    result = runner.invoke(app, ["heads", "sinks", "tiny-gqa", "--text", str(short), "--out", str(out)])
    assert result.exit_code == 2 and "fewer than one window" in result.output and not out.exists()


def test_calibrate_then_evaluate_on_held_out_split(tmp_path, store):
    tasks = task_file(tmp_path)
    cal = tmp_path / "CAL.json"
    result = runner.invoke(app, ["calibrate", "zerotuning", "tiny-gqa", "--task", str(tasks), "--candidates", "layer",
                                 "--budget", "1", "--out", str(cal)])
    assert result.exit_code == 0, result.output
    data = json.loads(cal.read_text())
    assert data["method"] == "zerotuning" and data["task"]["split"] == "calibration" and data["task"]["items"] == 3
    out = tmp_path / "EVAL.json"
    result = runner.invoke(app, ["eval", "task", "tiny-gqa", "--task", str(tasks), "--intervention", str(cal),
                                 "--bootstrap", "100", "--out", str(out)])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(out.read_text())
    assert evaluation["items"] == 3 and evaluation["task"]["split"] == "test"
    assert "baseline" in evaluation and ("calibrated" in evaluation) == bool(data["interventions"])
    assert "baseline" in result.output


def test_calibrate_act_refuses_the_test_split_and_bad_files(tmp_path, store):
    tasks = task_file(tmp_path)
    cal = tmp_path / "CAL.json"
    result = runner.invoke(app, ["calibrate", "act", "tiny-gqa", "--task", str(tasks), "--split", "test", "--out", str(cal)])
    assert result.exit_code == 2 and "calibration split" in result.output and not cal.exists()
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"interventions": [{"kind": "nope", "layer": 0, "head": 0}]}))
    result = runner.invoke(app, ["eval", "task", "tiny-gqa", "--task", str(tasks), "--intervention", str(bogus)])
    assert result.exit_code == 2 and "unknown intervention kind" in result.output


def test_calibrate_act_writes_act_interventions(tmp_path, store):
    tasks = task_file(tmp_path)
    cal = tmp_path / "CAL.json"
    result = runner.invoke(app, ["calibrate", "act", "tiny-gqa", "--task", str(tasks), "--budget", "1",
                                 "--candidates", "layer", "--threshold", "0.05", "--out", str(cal)])
    assert result.exit_code == 0, result.output
    data = json.loads(cal.read_text())
    assert data["method"] == "act" and len(data["search"]["profile"]) == 2  # layers 0 and 1 of tiny
    assert all(i["kind"] == "act" and i["scope"] == "prefill" for i in data["interventions"])


def test_eval_task_compares_several_interventions_against_one_baseline(tmp_path, store):
    tasks = task_file(tmp_path)
    files = []
    for name, gamma in (("up", 8.0), ("down", 0.125)):
        path = tmp_path / f"{name}.json"
        heads = [{"kind": "logit_bias", "layer": layer, "head": head, "keys": [0], "bias": math.log(gamma)} for layer in (0, 1) for head in range(4)]
        path.write_text(json.dumps({"interventions": heads}))
        files += ["--intervention", str(path)]
    out = tmp_path / "EVAL.json"
    result = runner.invoke(app, ["eval", "task", "tiny-gqa", "--task", str(tasks), *files, "--bootstrap", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(out.read_text())
    up, down = evaluation["comparisons"]
    assert up["intervention"].endswith("up.json") and down["intervention"].endswith("down.json")
    assert up["calibrated"] == evaluation["calibrated"]
    assert up["calibrated"]["correct_items"] != down["calibrated"]["correct_items"] or up["calibrated"]["margin"] != down["calibrated"]["margin"]
    base = evaluation["baseline"]["correct_items"]
    for comparison in (up, down):  # the paired difference is against the one baseline pass
        gain = sum(c - b for b, c in zip(base, comparison["calibrated"]["correct_items"], strict=True)) / len(base)
        assert abs(comparison["difference"]["mean"] - gain) < 1e-9
    assert result.output.count("calibrated") == 2
