"""The capture table's numbers are means over query positions 1..T-1 of the eager reference."""

import pandas as pd
import torch
from reference import eager_attentions, row_statistics
from typer.testing import CliRunner

from workbench.cli import app


def test_capture_table_equals_eager_means(tmp_path, monkeypatch, tiny):
    text = "Means over positions one to T minus one, no BOS added, straight from the text file."
    path = tmp_path / "t.txt"
    path.write_text(text)
    out = tmp_path / "table.parquet"
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    result = CliRunner().invoke(
        app, ["capture", "tiny-gqa", "--text", str(path), "--out", str(out), "--window", "40"]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out).set_index(["layer", "head"])
    ids = tiny.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :40]
    attentions, _ = eager_attentions(tiny.hf, ids)
    for layer, p in enumerate(attentions):
        reference = row_statistics(p)
        for name in ("sink_mass", "entropy", "mean_distance", "waad", "max"):
            expected = reference[name][0, :, 1:].mean(-1)
            got = torch.tensor([table.loc[(layer, h), name] for h in range(4)], dtype=torch.float64)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
