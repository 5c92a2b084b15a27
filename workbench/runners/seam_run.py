"""The one piece every runner shares: an instrumented forward that ends in a ``Capture``.

A runner (HF, TransformerLens, nnsight, vision) differs only in how it calls its model; everything
around the call is here, once::

    with seam_run(model.hf, spec, interventions, adapter=model.adapter, shape=model.shape,
                  meta={"model": model.name}, backends=model.backends) as run:
        logits = model.hf(input_ids=ids)          # any forward that reaches the model's attention modules
    run.capture                                   # None when the spec captures nothing

Inside the block the attention seam is attached (``instrument``) under ``torch.no_grad()``; on a normal
exit a requested layer that never reached the seam raises ``CaptureError`` (never an empty capture), and
the records become ``run.capture`` with ``meta = {"spec": spec.to_dict(), **meta}``. ``backends``, a set,
receives the backends the session ran (also after an exception).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from workbench.adapters import Adapter, ModelShape
from workbench.capture import Capture
from workbench.seam.attention import Session, instrument
from workbench.seam.interventions import Intervention
from workbench.seam.spec import CaptureSpec


@dataclass
class SeamRun:
    """One instrumented forward: its ``session`` (records, backends, ``progress``) and, after the block,
    its ``capture``."""

    session: Session
    capture: Capture | None = None


@contextlib.contextmanager
def seam_run(
    hf_model,
    spec: CaptureSpec | None,
    interventions: Sequence[Intervention] = (),
    *,
    adapter: Adapter,
    shape: ModelShape,
    meta: dict | None = None,
    backends: set[str] | None = None,
) -> Iterator[SeamRun]:
    """Instrument ``hf_model`` (through ``adapter``) for one forward without gradients; see the module
    docstring."""
    with torch.no_grad(), instrument(hf_model, spec, interventions, adapter=adapter) as session:
        run = SeamRun(session)
        try:
            yield run
        finally:
            if backends is not None:
                backends |= session.ran()
        session.check_fired()
    if spec is not None and spec.captures_anything:
        meta = {"spec": spec.to_dict(), **(meta or {})}
        run.capture = Capture.from_records(shape, session.records, meta=meta)
