"""Several texts in one capture: right-padded batches give, for every text, what capturing it alone gives."""

import pytest
import torch

import workbench as wb

TEXTS = {
    "short": "A short one.",
    "long": "A considerably longer sentence that sets the batch length, with a comma or two, and more.",
    "middle": "The keeper wrote every ship's name down.",
}
SPEC = wb.CaptureSpec(
    statistics=("entropy", "max", "sink_mass", "local_mass", "mean_distance", "waad", "lse", "argmax"),
    key_statistics=("received", "fai"),
    fai_window=(1, 8),
    top_k=3,
)


@pytest.mark.parametrize("batch_size", [8, 2])
def test_batched_capture_equals_per_text_captures(tiny, batch_size):
    batched = tiny.capture(TEXTS, SPEC, batch_size=batch_size)
    assert batched.names == list(TEXTS)
    assert len(set(batched.lengths)) == 3  # really padded
    for (name, text), part in zip(TEXTS.items(), batched.split(), strict=True):
        alone = tiny.capture(text, SPEC)
        assert part.tokens == alone.tokens and part.meta["text"] == name
        assert list(part.positions) == list(alone.positions)
        for kind in ("row", "key"):
            for stat, value in getattr(alone, kind).items():
                torch.testing.assert_close(
                    getattr(part, kind)[stat].double(),
                    value.double(),
                    rtol=1e-4,
                    atol=1e-5,
                    msg=f"{name} {stat}",
                )
        torch.testing.assert_close(part.top_k[..., 2:, :], alone.top_k[..., 2:, :])  # >= k keys: no ties
        table = batched.head_tables()[name]
        reference = alone.head_table()
        for column in ("entropy", "sink_mass", "mean_distance"):
            torch.testing.assert_close(
                torch.tensor(table[column].values),
                torch.tensor(reference[column].values),
                rtol=1e-4,
                atol=1e-5,
            )


def test_combined_table_is_the_mean_over_texts(tiny):
    batched = tiny.capture(list(TEXTS.values()), SPEC)
    combined = batched.head_table()
    per_text = [tiny.capture(text, SPEC).head_table() for text in TEXTS.values()]
    for column in ("entropy", "sink_mass", "mean_distance"):
        expected = sum(torch.tensor(t[column].values) for t in per_text) / len(per_text)
        torch.testing.assert_close(torch.tensor(combined[column].values), expected, rtol=1e-4, atol=1e-5)
    assert combined.attrs["texts"] == ["0", "1", "2"]
    frame = batched.to_frame("row")
    assert len(frame) == sum(batched.lengths) * len(batched.layers) * len(batched.heads)
    assert set(frame["text"]) == {"0", "1", "2"} and (frame["token"] != "").all()


def test_unsupported_over_several_texts_is_a_clear_error(tiny):
    with pytest.raises(wb.SpecError, match="capture each text on its own"):
        tiny.capture(["a b", "c d e"], wb.CaptureSpec(pooled_cells=4))
    with pytest.raises(wb.InputError, match="text '1'"):
        tiny.capture(["a b", "  "])
    with pytest.raises(wb.InputError, match="no texts"):
        tiny.capture([])


def test_capture_command_on_a_folder_writes_a_table_per_text_and_the_mean(tmp_path, monkeypatch, tiny):
    import pandas as pd
    from typer.testing import CliRunner

    from workbench.cli import app

    folder = tmp_path / "texts"
    folder.mkdir()
    for name, text in TEXTS.items():
        (folder / f"{name}.txt").write_text(text)
    (folder / "notes.md").write_text("not a text")
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    out = tmp_path / "tables" / "heads.parquet"
    result = CliRunner().invoke(app, ["capture", "tiny-gqa", "--text", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "heads.long.parquet",
        "heads.middle.parquet",
        "heads.parquet",
        "heads.short.parquet",
    ]
    combined = pd.read_parquet(out)
    for name, text in TEXTS.items():
        alone = tiny.capture(text).head_table()
        table = pd.read_parquet(out.parent / f"heads.{name}.parquet")
        torch.testing.assert_close(
            torch.tensor(table["entropy"].values), torch.tensor(alone["entropy"].values), rtol=1e-4, atol=1e-5
        )
    mean = sum(pd.read_parquet(out.parent / f"heads.{n}.parquet")["sink_mass"] for n in TEXTS) / 3
    torch.testing.assert_close(torch.tensor(combined["sink_mass"].values), torch.tensor(mean.values))
    runs = CliRunner().invoke(app, ["runs", "--json"])
    assert runs.output.count('"run_id"') == 3


@pytest.mark.parametrize(
    ("files", "words"), [({}, "no *.txt files"), ({"a.txt": "fine text", "b.txt": "   "}, "b.txt is empty")]
)
def test_capture_command_on_a_bad_folder_is_one_line_and_writes_nothing(tmp_path, monkeypatch, files, words):
    from typer.testing import CliRunner

    from workbench.cli import app

    folder = tmp_path / "texts"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "results"))
    out = tmp_path / "tables" / "heads.parquet"
    result = CliRunner().invoke(app, ["capture", "tiny-gqa", "--text", str(folder), "--out", str(out)])
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "tables").exists() and not (tmp_path / "results").exists()


def test_run_on_several_texts_points_to_capture(tiny):
    with pytest.raises(wb.InputError, match=r"model.capture\(texts\)"):
        tiny.run(["a b", "c d"], wb.CaptureSpec())
