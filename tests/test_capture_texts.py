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
                    getattr(part, kind)[stat].double(), value.double(), rtol=1e-4, atol=1e-5, msg=f"{name} {stat}"
                )
        torch.testing.assert_close(part.top_k[..., 2:, :], alone.top_k[..., 2:, :])  # >= k keys: no ties
        table = batched.head_tables()[name]
        reference = alone.head_table()
        for column in ("entropy", "sink_mass", "mean_distance"):
            torch.testing.assert_close(
                torch.tensor(table[column].values), torch.tensor(reference[column].values), rtol=1e-4, atol=1e-5
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
