"""The seam's per-layer record is typed (``LayerRecord``), and every runner ends a forward the same way
(``workbench.runners.seam_run``)."""

from __future__ import annotations

import io

import pytest
import torch

import workbench as wb
from workbench.capture import Capture
from workbench.runners.hf import cache_of, with_cache
from workbench.runners.seam_run import seam_run
from workbench.seam.record import LayerRecord


def same_records(a: LayerRecord, b: LayerRecord) -> bool:
    def same(x, y):
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return x == y

    return all(same(getattr(a, name), getattr(b, name)) for name in a.to_dict())


def generation_records(tiny):
    spec = wb.CaptureSpec(
        statistics=("entropy", "argmax", "sink_mass"),
        key_statistics=("received", "fai"),
        pooled_cells=4,
        rows=(1,),
        decode_rows=True,
        top_k=2,
    )
    with seam_run(tiny.hf, spec, adapter=tiny.adapter, shape=tiny.shape, meta={"model": tiny.name}) as run:
        out = tiny.hf(input_ids=tiny.encode("The keeper"), use_cache=True)
        step = out.logits[:, -1:].argmax(-1)
        tiny.hf(input_ids=step, use_cache=True, **with_cache(tiny.hf, cache_of(out)))
    return spec, run


def test_a_record_round_trips_through_plain_data_and_torch_save(tiny):
    _, run = generation_records(tiny)
    records = run.session.records
    prefill, decode = records[0]
    assert (prefill.phase, decode.phase) == ("prefill", "decode")
    assert prefill.backend == "pytorch" and prefill.heads == tuple(range(tiny.shape.num_heads))
    assert (
        list(decode.positions) == [prefill.num_queries] and prefill.has_key_pass and not decode.has_key_pass
    )
    assert set(prefill.key) == {"received", "fai"} and prefill.pooled.shape[-1] == 4 and 1 in prefill.rows
    assert decode.decode_row is not None and decode.top_k.shape[-1] == 2
    for record in (prefill, decode):
        again = LayerRecord.from_dict(record.to_dict())
        assert same_records(record, again)
        buffer = io.BytesIO()
        torch.save(record.to_dict(), buffer)
        buffer.seek(0)
        assert same_records(record, LayerRecord.from_dict(torch.load(buffer, weights_only=True)))


def test_a_capture_from_round_tripped_records_is_the_same_capture(tiny):
    _, run = generation_records(tiny)
    again = {
        layer: [LayerRecord.from_dict(r.to_dict()) for r in calls]
        for layer, calls in run.session.records.items()
    }
    capture = Capture.from_records(tiny.shape, again, meta=run.capture.meta)
    for name in run.capture.row:
        assert torch.equal(capture.row[name], run.capture.row[name])
    for name in ("received", "fai"):
        assert torch.equal(capture.key[name], run.capture.key[name])
    assert torch.equal(capture.pooled, run.capture.pooled) and torch.equal(capture.top_k, run.capture.top_k)
    assert torch.equal(capture.decode_rows, run.capture.decode_rows) and torch.equal(
        capture.rows[1], run.capture.rows[1]
    )
    assert capture.positions.tolist() == list(range(len(tiny.encode("The keeper")[0]) + 1))


def test_a_record_rejects_unknown_fields_and_phases():
    with pytest.raises(ValueError, match="unknown layer-record field"):
        LayerRecord.from_dict(
            {"heads": (0,), "phase": "prefill", "num_queries": 1, "num_keys": 1, "extra": 1}
        )
    with pytest.raises(ValueError, match="phase"):
        LayerRecord(heads=(0,), phase="train", num_queries=1, num_keys=1)


def test_seam_run_meta_backends_and_capture(tiny):
    backends: set[str] = set()
    spec = wb.CaptureSpec(statistics=("entropy",))
    with seam_run(
        tiny.hf, spec, adapter=tiny.adapter, shape=tiny.shape, meta={"runner": "x"}, backends=backends
    ) as run:
        tiny.hf(input_ids=tiny.encode("abc"))
    assert run.capture.meta == {"spec": spec.to_dict(), "runner": "x"} and backends == {"pytorch"}
    with seam_run(tiny.hf, None, adapter=tiny.adapter, shape=tiny.shape) as quiet:
        tiny.hf(input_ids=tiny.encode("abc"))
    assert quiet.capture is None


def test_seam_run_raises_when_a_requested_capture_never_fired(tiny):
    with pytest.raises(wb.CaptureError, match="never fired"):
        with seam_run(
            tiny.hf, wb.CaptureSpec(statistics=("entropy",)), adapter=tiny.adapter, shape=tiny.shape
        ):
            pass  # the forward never ran


def test_seam_run_records_backends_and_detaches_after_an_error(tiny):
    backends: set[str] = set()
    spec = wb.CaptureSpec(statistics=("entropy",))
    with pytest.raises(RuntimeError, match="boom"):
        with seam_run(tiny.hf, spec, adapter=tiny.adapter, shape=tiny.shape, backends=backends):
            tiny.hf(input_ids=tiny.encode("abc"))
            raise RuntimeError("boom")
    assert backends == {"pytorch"}
    assert all(not hasattr(m, "_workbench_session") for m in tiny.adapter.attention_modules(tiny.hf))
