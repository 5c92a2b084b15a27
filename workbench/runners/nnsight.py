"""nnsight 0.8 runner: a trace over the same HF model, attention via the seam.

Inside ``run`` the model is traced with nnsight (so users can add their own ``.save()`` reads through
``extra``), while the seam records statistics and applies interventions exactly as in the HF runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from workbench.capture import Capture
from workbench.runners.hf import Model
from workbench.seam.interventions import Intervention
from workbench.seam.spec import CaptureSpec


class NNsightRunner:
    def __init__(self, model: Model):
        try:
            from nnsight import NNsight
        except ImportError as error:  # pragma: no cover
            raise ImportError("the nnsight runner needs `pip install nnsight>=0.8`") from error
        self.model = model
        self.traced = NNsight(model.hf)

    def run(
        self,
        inputs,
        spec: CaptureSpec | None = None,
        interventions: Sequence[Intervention] = (),
        extra: Callable | None = None,
    ):
        """Forward under an nnsight trace. ``extra(traced)`` may read or edit modules inside the trace."""
        ids = self.model._ids(inputs).to(self.model.device)
        with torch.no_grad(), self.model.seam(spec, interventions) as session:
            with self.traced.trace(ids):
                if extra is not None:
                    extra(self.traced)
                logits = self.traced.lm_head.output.save()
            session.check_fired()
        capture = None
        if spec is not None and spec.captures_anything:
            capture = Capture.from_records(
                self.model.shape, session.records, meta={"spec": spec.to_dict(), "runner": "nnsight"}
            )
        return torch.as_tensor(logits), capture
