"""Hooks are owned by a context: removed on exit, also after an exception; a capture that never
fired is an error, not an empty result."""

import gc
import weakref

import pytest
import torch

import workbench as wb
from workbench.seam.attention import _SESSION, Session


def test_session_removed_and_implementation_restored_after_exception(tiny):
    modules = tiny.adapter.attention_modules(tiny.hf)
    tiny.hf.set_attn_implementation("sdpa")
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with wb.instrument(tiny.hf, wb.CaptureSpec()):
                assert tiny.hf.config._attn_implementation == "workbench"
                assert all(hasattr(m, _SESSION) for m in modules)
                raise RuntimeError("boom")
        assert not any(hasattr(m, _SESSION) for m in modules)
        assert tiny.hf.config._attn_implementation == "sdpa"
    finally:
        tiny.hf.set_attn_implementation("workbench")


def test_capture_that_never_fired_is_an_error(tiny):
    with pytest.raises(wb.CaptureError, match="never fired"):
        with wb.instrument(tiny.hf, wb.CaptureSpec()) as session:
            session.check_fired()  # no forward ran


def test_sessions_do_not_leak(tiny):
    with wb.instrument(tiny.hf, wb.CaptureSpec()) as session:
        with torch.no_grad():
            tiny.hf(input_ids=tiny.encode("leak check"))
    ref = weakref.ref(session)
    assert isinstance(session, Session)
    del session
    gc.collect()
    assert ref() is None


def test_no_session_means_plain_sdpa(tiny):
    ids = tiny.encode("plain attention when nothing is attached")
    with torch.no_grad():
        plain = tiny.hf(input_ids=ids).logits
        tiny.hf.set_attn_implementation("sdpa")
        sdpa = tiny.hf(input_ids=ids).logits
        tiny.hf.set_attn_implementation("workbench")
    torch.testing.assert_close(plain, sdpa, rtol=1e-5, atol=1e-5)


def test_lens_runner_leaves_the_hf_model_plain():
    """The TransformerLens bridge wraps modules in place; it must wrap a copy sharing the weights, so the
    user's HF model keeps its own classes and eager ``output_attentions`` afterwards."""
    from workbench.runners.lens import LensRunner

    model = wb.load_model("tiny-gqa")
    ids = model.encode("The bridge must not rewire the model it was given.")
    classes = [type(m).__name__ for m in model.hf.modules()]
    runner = LensRunner(model)
    logits, _ = runner.run(ids, wb.CaptureSpec())
    assert [type(m).__name__ for m in model.hf.modules()] == classes
    assert runner.hf.model.embed_tokens.weight is model.hf.model.embed_tokens.weight  # shared, not copied
    torch.testing.assert_close(logits, model.logits(ids), rtol=0, atol=1e-5)
    model.hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model.hf(input_ids=ids, output_attentions=True, use_cache=False)
    finally:
        model.hf.set_attn_implementation("workbench")
    assert len(out.attentions) == model.shape.num_layers
