"""Every statistic of the seam equals an eager (output_attentions) reference, on all three runners."""

import pytest
import torch
from reference import eager_attentions, key_statistics, pooled, reference_lse, row_statistics

import workbench as wb
from workbench.runners.lens import LensRunner
from workbench.runners.nnsight import NNsightRunner

ROW = ("lse", "entropy", "max", "argmax", "sink_mass", "local_mass", "span_mass", "mean_distance", "waad")


def full_spec(length):
    return wb.CaptureSpec(
        statistics=ROW,
        key_statistics=("received", "fai"),
        span=(3, 9),
        sink_tokens=2,
        local_window=8,
        waad_window=10,
        fai_window=(10, 100),
        pooled_cells=16,
        rows=(0, length // 2, -1),
        top_k=3,
    )


def make_reference(model, ids):
    attentions, logits = eager_attentions(model.hf, ids)
    lse = reference_lse(model.hf, ids)
    return {"p": attentions, "lse": lse, "logits": logits}


def check(capture, reference, ids, tol=1e-4):
    length = ids.shape[-1]
    assert capture.layers == list(range(len(reference["p"])))
    for li, p in enumerate(reference["p"]):
        rows = row_statistics(p, sink_tokens=2, local_window=8, waad_window=10, span=(3, 9))
        for name in ROW:
            ours = capture.row[name][:, li].to(torch.float64)
            if name == "lse":
                torch.testing.assert_close(ours, reference["lse"][li], rtol=tol, atol=tol)
            elif name == "argmax":
                chosen = p.gather(-1, capture.row["argmax"][:, li].unsqueeze(-1)).squeeze(-1)
                torch.testing.assert_close(chosen, p.amax(-1), rtol=0, atol=1e-6)
            else:
                torch.testing.assert_close(ours, rows[name], rtol=tol, atol=tol, msg=f"{name} layer {li}")
        keys = key_statistics(p)
        for name in ("received", "fai"):
            torch.testing.assert_close(
                capture.key[name][:, li].to(torch.float64), keys[name], rtol=tol, atol=tol
            )
        torch.testing.assert_close(capture.pooled[:, li].to(torch.float64), pooled(p, 16), rtol=tol, atol=tol)
        for position in (0, length // 2, length - 1):
            torch.testing.assert_close(
                capture.rows[position][:, li].to(torch.float64), p[:, :, position], rtol=tol, atol=tol
            )
        top = capture.top_k[:, li]
        torch.testing.assert_close(p.gather(-1, top[..., :1]).squeeze(-1), p.amax(-1), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_model():
    return wb.load_model("tiny-gqa")


@pytest.fixture(scope="module")
def tiny_case(tiny_model):
    ids = tiny_model.encode("The seam must agree with eager attention on every statistic, for every head.")
    return ids, make_reference(tiny_model, ids)


@pytest.mark.parametrize("runner", ["hf", "lens", "nnsight"])
def test_tiny_gqa_all_statistics_match_eager(tiny_model, tiny_case, runner):
    ids, reference = tiny_case
    spec = full_spec(ids.shape[-1])
    if runner == "hf":
        logits, capture = tiny_model.run(ids, spec)
    elif runner == "lens":
        logits, capture = LensRunner(tiny_model).run(ids, spec)
    else:
        logits, capture = NNsightRunner(tiny_model).run(ids, spec)
    check(capture, reference, ids)
    torch.testing.assert_close(logits, reference["logits"], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def smol_case(smollm2, sample_text):
    ids = smollm2.encode(sample_text)[:, :256]
    assert ids.shape[-1] == 256
    return ids, make_reference(smollm2, ids)


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["hf", "lens", "nnsight"])
def test_smollm2_256_tokens_all_statistics_match_eager(smollm2, smol_case, runner):
    ids, reference = smol_case
    spec = full_spec(ids.shape[-1])
    if runner == "hf":
        _, capture = smollm2.run(ids, spec)
    elif runner == "lens":
        _, capture = LensRunner(smollm2).run(ids, spec)
    else:
        _, capture = NNsightRunner(smollm2).run(ids, spec)
    check(capture, reference, ids)


def test_runners_give_identical_captures(tiny_model):
    ids = tiny_model.encode("Identical captures from three runners.")
    spec = wb.CaptureSpec(key_statistics=("received",), pooled_cells=8)
    _, a = tiny_model.run(ids, spec)
    _, b = LensRunner(tiny_model).run(ids, spec)
    _, c = NNsightRunner(tiny_model).run(ids, spec)
    for other in (b, c):
        for name in a.row:
            assert torch.equal(a.row[name], other.row[name]), name
        assert torch.equal(a.key["received"], other.key["received"])
        assert torch.equal(a.pooled, other.pooled)


def test_chunked_path_matches_single_chunk(tiny_model, monkeypatch):
    """Query chunking must not change any statistic (force tiny chunks)."""
    from workbench.seam import torch_path

    ids = tiny_model.encode("Chunk boundaries are invisible to the statistics of every row and key.")
    spec = full_spec(ids.shape[-1])
    _, whole = tiny_model.run(ids, spec)
    monkeypatch.setattr(torch_path, "_CHUNK_ELEMENTS", 4 * ids.shape[-1] * 3)
    _, chunked = tiny_model.run(ids, spec)
    for name in whole.row:
        torch.testing.assert_close(whole.row[name], chunked.row[name], rtol=1e-6, atol=1e-6)
    for name in whole.key:
        torch.testing.assert_close(whole.key[name], chunked.key[name], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(whole.pooled, chunked.pooled, rtol=1e-6, atol=1e-6)
