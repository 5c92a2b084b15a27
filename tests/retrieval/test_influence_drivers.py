"""The AttentionInfluence drivers: the corpus builder and the Table 6 mirror check (CPU smoke run)."""

from __future__ import annotations

import json

from workbench.report import influence


def test_corpus_builder_balances_the_domains(tmp_path, run_driver):
    essays = tmp_path / "data" / "niah" / "essays"
    essays.mkdir(parents=True)
    (essays / "a.txt").write_text("\n".join(f"Line {i} of an essay about startups." for i in range(400)))
    (tmp_path / "data" / "gsm8k").mkdir()
    problems = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(300)]
    (tmp_path / "data" / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    out = tmp_path / "docs.jsonl"
    run_driver("influence_corpus.py", "--out", out, "--data", tmp_path / "data", "--per-domain", 3, "--chars", 1000)
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["documents"] == {"general": 3, "math": 3, "code": 3}
    assert [d["domain"] for d in docs] == ["general"] * 3 + ["math"] * 3 + ["code"] * 3
    assert all(len(d["text"]) >= 1000 for d in docs)
    assert manifest["candidates"]["general"] > 3  # thinned evenly, not the first three
    assert docs[1]["id"] != "a-1"


def test_mirror_check_smoke_feeds_the_report(tmp_path, run_driver):
    out = tmp_path / "influence" / "mirror-smoke"
    run_driver("influence_mirror.py", "--smoke", "--out", out)
    result = json.loads((out / "results.json").read_text())
    assert set(result["conditions"]) == {"base", "top", "random-0", "random-1", "random-2"}
    top = {tuple(h) for h in result["conditions"]["top"]}
    for name in ("random-0", "random-1", "random-2"):
        assert not top & {tuple(h) for h in result["conditions"][name]}
    for task in ("kv", "icl"):
        for condition in result["tasks"][task]["conditions"].values():
            assert len(condition["correct"]) == 4
    kv = result["tasks"]["kv"]["conditions"]
    assert kv["top"]["loglik"] != kv["base"]["loglik"]  # the mask reaches the model
    entries = influence.mirror_findings(tmp_path)
    assert {e["finding"].split(" (")[0] for e in entries} >= {
        "Masking the top-5% retrieval heads hurts JSON key-value retrieval",
        "Masking the top-5% retrieval heads hurts 8-shot sentiment ICL",
    }
