"""No repeated deprecation warnings or progress bars from our own generation loops and model loads."""

import warnings

import pytest


def test_generation_loops_use_the_cache_api_without_deprecation_warnings(tiny):
    from workbench.analyses.retrieval.niah import generate_with_decode_capture

    ids = tiny.encode("The pass key is 12345. What is the pass key?")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny.generate("Once upon a time", max_new_tokens=4)
        generate_with_decode_capture(tiny, ids, max_new_tokens=4)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "past_key_values" in m or "cache_params" in m], messages


def test_our_loads_show_no_loading_progress_bar(tmp_path, monkeypatch):
    import transformers
    from transformers.utils import logging as hf_logging

    from workbench.models import registry

    seen = []

    class Stop(Exception):
        pass

    def fake_from_pretrained(*args, **kwargs):
        seen.append(hf_logging.is_progress_bar_enabled())
        raise Stop

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    hf_logging.enable_progress_bar()
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    with pytest.raises(Stop):
        registry.resolve(str(folder))
    assert seen == [False]  # silenced during our load
    assert hf_logging.is_progress_bar_enabled()  # and the user's setting is back afterwards
