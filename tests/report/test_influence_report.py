"""AttentionInfluence findings: the mirror effect per domain, the perplexity-proxy check and the Table 6
mirror check, from synthetic raw files whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.report import influence


def _scores(tmp_path, gap: float, rho_sign: float, n: int = 300):
    rng = np.random.default_rng(1)
    rows = []
    for domain in ("code", "general"):
        loss = rng.uniform(2, 4, n)
        noise = rng.normal(0, 0.01, n)
        score = 0.1 + rho_sign * 0.02 * (loss - 3) + noise if rho_sign else 0.1 + noise
        rows += [{"doc": f"{domain}-{i}", "domain": domain, "tokens": 512, "loss_base": loss[i],
                  "loss_masked": loss[i] * (1 + score[i]), "influence": score[i],
                  "loss_random": loss[i] * (1 + score[i] - gap), "influence_random": score[i] - gap + rng.normal(0, 0.005),
                  "random_heads": "1.2 3.4"} for i in range(n)]
    folder = tmp_path / "influence" / "cpu-x"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "SCORES.parquet")
    return tmp_path


@pytest.mark.parametrize(("gap", "rho_sign", "mirror", "proxy"), [
    (0.05, 0.0, "reproduced", "reproduced"),
    (-0.05, 1.0, "not reproduced", "not reproduced"),
])
def test_influence_findings_follow_the_data(tmp_path, gap, rho_sign, mirror, proxy):
    data = _scores(tmp_path, gap, rho_sign)
    entries = influence.findings(data)
    assert len(entries) == 4  # two domains x (mirror effect, proxy check)
    for entry in entries:
        expected = mirror if "mirror effect" in entry["finding"] else proxy
        assert entry["verdict"] == expected, entry
        assert entry["n"] == 300 and entry["ci"][0] <= entry["value"] <= entry["ci"][1]
    assert "| code | 300 | 512 |" in influence.table(data)


def test_a_run_without_the_random_control_gives_no_finding(tmp_path):
    data = _scores(tmp_path, 0.05, 0.0)
    path = data / "influence" / "cpu-x" / "SCORES.parquet"
    pd.read_parquet(path).drop(columns=["loss_random", "influence_random", "random_heads"]).to_parquet(path)
    assert influence.findings(data) == []
    assert "| - | - |" in influence.table(data)


def _mirror(tmp_path, top: list[int], random: list[int], cut: bool = False):
    conditions = {"base": [[]], "top": [[0, 1]], "random-0": [[2, 3]], "random-1": [[2, 4]]}
    kv = {c: {"correct": top if c == "top" else random, "loglik": [-1.0 if c == "top" else -0.5] * len(top)}
          for c in conditions}
    if cut:
        del kv["random-1"]
    result = {"model": "m", "device": "cpu", "exclude_top": 50, "conditions": conditions,
              "tasks": {"kv": {"items": [str(i) for i in range(len(top))], "prompt_tokens": [700, 800],
                               "conditions": kv}}}
    folder = tmp_path / "influence" / "mirror-x"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(result))
    return tmp_path


def test_mirror_findings_pair_the_items_and_skip_a_cut_run(tmp_path):
    data = _mirror(tmp_path, top=[0] * 30 + [1] * 10, random=[1] * 40)
    entries = influence.mirror_findings(data)
    assert [e["verdict"] for e in entries] == ["reproduced", "reproduced"]  # accuracy and log-likelihood
    assert entries[0]["value"] == pytest.approx(0.75) and entries[1]["value"] == pytest.approx(0.5)
    assert "| JSON key-value retrieval | accuracy | 40 | 700-800 |" in influence.mirror_table(data)
    same = _mirror(tmp_path, top=[1, 0] * 20, random=[1, 0] * 20)
    assert influence.mirror_findings(same)[0]["verdict"] == "not reproduced"  # a difference of exactly 0
    cut = _mirror(tmp_path, top=[0] * 40, random=[1] * 40, cut=True)
    assert influence.mirror_findings(cut) == []
