"""Attention above the diagonal is exactly zero, also in left-padded batches; padded batches match eager."""

import torch
from reference import eager_attentions, row_statistics

import workbench as wb


def padded_batch(model):
    texts = ["A short one.", "A considerably longer sentence that sets the batch length."]
    model.tokenizer.padding_side = "left"
    batch = model.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def test_upper_triangle_is_zero_unpadded(tiny):
    ids = tiny.encode("Causality: no query may see a key after it.")
    t = ids.shape[-1]
    _, capture = tiny.run(ids, wb.CaptureSpec(statistics=("max",), rows=tuple(range(t))))
    for position, row in capture.rows.items():
        assert torch.all(row[..., position + 1 :] == 0)
        torch.testing.assert_close(row.sum(-1), torch.ones_like(row.sum(-1)), rtol=1e-5, atol=1e-5)


def test_upper_triangle_and_pad_keys_are_zero_in_padded_batch(tiny):
    ids, mask = padded_batch(tiny)
    t = ids.shape[-1]
    _, capture = tiny.run(ids, wb.CaptureSpec(statistics=("max",), rows=tuple(range(t))), attention_mask=mask)
    pad = int((mask[0] == 0).sum())
    assert pad > 0
    for position, row in capture.rows.items():
        assert torch.all(row[..., position + 1 :] == 0), position
        assert torch.all(row[0, ..., :pad] == 0), position  # pad keys get nothing


def test_padded_batch_matches_eager_on_real_tokens(tiny):
    ids, mask = padded_batch(tiny)
    pad = int((mask[0] == 0).sum())
    attentions, _ = eager_attentions(tiny.hf, ids, attention_mask=mask)
    _, capture = tiny.run(
        ids, wb.CaptureSpec(statistics=("entropy", "max", "mean_distance")), attention_mask=mask
    )
    for layer, p in enumerate(attentions):
        reference = row_statistics(p)
        for name in ("entropy", "max", "mean_distance"):
            ours = capture.row[name][:, layer].to(torch.float64)
            torch.testing.assert_close(ours[0, :, pad:], reference[name][0, :, pad:], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(ours[1], reference[name][1], rtol=1e-4, atol=1e-4)
