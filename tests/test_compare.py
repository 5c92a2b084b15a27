"""``workbench compare`` and ``workbench.analyses.compare``: two head tables side by side."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from workbench.analyses.compare import CompareError, compare_head_tables, compare_runs
from workbench.cli import app
from workbench.store import Store


def table(seed: int, layers: int = 3, heads: int = 4, extra: str | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(layer, head) for layer in range(layers) for head in range(heads)]
    frame = pd.DataFrame(rows, columns=["layer", "head"])
    frame["kv_head"] = frame["head"] // 2
    frame["entropy"] = rng.random(len(frame))
    frame["sink_mass"] = rng.random(len(frame))
    frame["label"] = "mixed"  # not numeric: not a statistic
    if extra:
        frame[extra] = rng.random(len(frame))
    return frame


def test_library_values_differences_and_summary():
    a, b = table(0, extra="only_a"), table(1, extra="only_b")
    result = compare_head_tables(a, b, top_k=5)
    assert list(result.summary["statistic"]) == ["entropy", "sink_mass"]  # shared numeric statistics only
    for statistic in ("entropy", "sink_mass"):
        rows = result.heads[result.heads["statistic"] == statistic].sort_values(["layer", "head"])
        np.testing.assert_array_equal(rows["a"], a[statistic])
        np.testing.assert_array_equal(rows["b"], b[statistic])
        np.testing.assert_allclose(rows["difference"], b[statistic] - a[statistic])
        summary = result.summary.set_index("statistic").loc[statistic]
        assert summary["max_abs_difference"] == pytest.approx(np.abs(b[statistic] - a[statistic]).max())
        assert summary["rank_correlation"] == pytest.approx(spearmanr(a[statistic], b[statistic]).statistic)
        top_a = set(a.nlargest(5, statistic)[["layer", "head"]].itertuples(index=False))
        top_b = set(b.nlargest(5, statistic)[["layer", "head"]].itertuples(index=False))
        assert summary["top_overlap"] == len(top_a & top_b) and summary["top_k"] == 5


def test_identical_tables_agree_fully():
    a = table(3)
    summary = compare_head_tables(a, a.copy()).summary
    assert (summary["max_abs_difference"] == 0).all()
    assert summary["rank_correlation"].tolist() == pytest.approx([1.0, 1.0])
    assert (summary["top_overlap"] == 10).all()


def test_two_models_of_different_shapes_compare_on_shared_heads():
    result = compare_head_tables(table(0, layers=2, heads=4), table(1, layers=3, heads=2))
    assert result.only_in_a == 4 and result.only_in_b == 2
    assert set(result.summary["heads"]) == {4}  # (0..1) x (0..1)
    wide = result.wide()
    assert list(wide.columns[:5]) == ["layer", "head", "entropy_a", "entropy_b", "entropy_difference"]


def test_nothing_shared_is_a_clear_error():
    a = table(0)[["layer", "head", "entropy"]]
    b = table(1)[["layer", "head", "sink_mass"]]
    with pytest.raises(CompareError, match="share no statistic"):
        compare_head_tables(a, b)


@pytest.fixture()
def two_runs(tmp_path):
    store = Store(tmp_path / "results")
    first = store.put_run("capture", "model-a", "x", head_tables={"heads": table(0)})
    second = store.put_run("capture", "model-b", "y", head_tables={"heads": table(1)})
    return store, first, second


def test_compare_runs_reads_the_store(two_runs):
    store, first, second = two_runs
    result = compare_runs(store, first[:8], second)
    assert result.a["model"] == "model-a" and result.b["run_id"] == second
    expected = compare_head_tables(table(0), table(1))
    pd.testing.assert_frame_equal(result.summary, expected.summary)


def test_cli_prints_summary_writes_table_and_json(two_runs, tmp_path):
    store, first, second = two_runs
    out = tmp_path / "cmp" / "diff.csv"
    result = CliRunner().invoke(
        app, ["compare", first, second, "--out", str(out), "--results", str(store.root)]
    )
    assert result.exit_code == 0, result.output
    assert "entropy" in result.output and "sink_mass" in result.output and "rank corr" in result.output
    written = pd.read_csv(out)
    assert len(written) == 12 and "sink_mass_difference" in written
    np.testing.assert_allclose(written["entropy_difference"], table(1)["entropy"] - table(0)["entropy"])
    as_json = CliRunner().invoke(app, ["compare", first, second, "--json", "--results", str(store.root)])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["a"]["run_id"] == first and len(data["heads"]) == 24
    assert {row["statistic"] for row in data["summary"]} == {"entropy", "sink_mass"}


def test_cli_unknown_run_is_one_line_exit_2(two_runs):
    store, first, _ = two_runs
    result = CliRunner().invoke(app, ["compare", first, "nosuchrun", "--results", str(store.root)])
    assert result.exit_code == 2
    assert (
        result.output.startswith("error: no run 'nosuchrun'") and len(result.output.strip().splitlines()) == 1
    )
