"""Figures carry token labels; the exact-row pattern is the capture's probabilities."""

import numpy as np
import pytest

import workbench as wb


def test_attention_pattern_is_the_exact_rows_with_token_labels(tiny):
    text = "ab ab cd"
    capture = tiny.capture(text, wb.CaptureSpec(rows=range(8)))
    figure = wb.attention_pattern(capture, layer=1, head=2)
    heatmap = figure.data[0]
    assert list(heatmap.x) == [f"{i} {t}" for i, t in enumerate(["a", "b", " ", "a", "b", " ", "c", "d"])]
    assert list(heatmap.y) == list(heatmap.x)
    z = np.asarray(heatmap.z, dtype=float)
    expected = np.stack([capture.rows[p][0, 1, 2].numpy() for p in range(8)])
    lower = np.tril(np.ones((8, 8), dtype=bool))
    np.testing.assert_allclose(z[lower], expected[lower], rtol=1e-6)
    assert np.isnan(z[~lower]).all()
    with pytest.raises(ValueError, match="rows=range"):
        wb.attention_pattern(tiny.capture(text), layer=1, head=2)


def test_pooled_map_labels_cells_with_their_tokens(tiny):
    capture = tiny.capture("The keeper wrote every name.", wb.CaptureSpec(pooled_cells=4))
    figure = wb.pooled_map(capture.pooled[0, 0, 0].numpy(), tokens=capture.tokens)
    labels = list(figure.data[0].x)
    assert len(labels) == capture.pooled.shape[-1] and labels[0].startswith("0: The")
    assert list(figure.data[0].y) == labels
    assert wb.pooled_map(capture.pooled[0, 0, 0].numpy()).data[0].x is None  # no tokens: cell numbers


def test_notebook_figures_always_keeps_html_and_png_when_asked():
    import plotly.io as pio

    previous = pio.renderers.default
    try:
        assert wb.notebook_figures(png=False) == "plotly_mimetype+notebook_connected"
        assert wb.notebook_figures(png=True).endswith("+png")
    finally:
        pio.renderers.default = previous


def test_non_sink_distance_is_the_distance_of_the_non_sink_mass(tiny):
    import torch
    from reference import eager_attentions

    from workbench.analyses.heads import longest_range_heads

    text = "Range without the sink: the first key is far from every late query."
    capture = tiny.capture(text)
    table = capture.head_table().set_index(["layer", "head"])
    ids = tiny.encode(text)
    attentions, _ = eager_attentions(tiny.hf, ids)
    t = ids.shape[-1]
    distance = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).clamp_min(0).double()
    distance[:, 0] = 0  # the sink counts as distance 0
    for layer, p in enumerate(attentions):
        expected = (p[0].double() * distance).sum(-1)[:, 1:].mean(-1)  # (head,), queries >= 1
        got = torch.tensor(
            [table.loc[(layer, h), "non_sink_distance"] for h in range(4)], dtype=torch.float64
        )
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    top = longest_range_heads(capture.head_table(), 1).iloc[0]
    assert top["non_sink_distance"] == table["non_sink_distance"].max()
