"""nnsight 0.8 runner: a trace over the same HF model, attention via the seam.

Inside ``run`` the model is traced with nnsight (so users can add their own ``.save()`` reads through
``extra``), while the seam records statistics and applies interventions exactly as in the HF runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from workbench.runners.hf import Model
from workbench.runners.seam_run import seam_run
from workbench.seam.interventions import Intervention
from workbench.seam.spec import CaptureSpec


class NNsightRunner:
    """Runs a workbench ``Model`` under an nnsight trace.

    ``NNsightRunner(model)`` traces a loaded model; ``NNsightRunner.from_language_model(lm)`` wraps the nnsight
    ``LanguageModel`` a user already has (same module tree, same tokenizer)::

        runner = wb.NNsightRunner.from_language_model(lm)   # lm = LanguageModel("HuggingFaceTB/SmolLM2-135M")
        table = runner.capture("The keeper kept a ledger.").head_table()
    """

    def __init__(self, model: Model, traced=None):
        try:
            from nnsight import NNsight
        except ImportError as error:  # pragma: no cover
            raise ImportError("the nnsight runner needs `pip install nnsight>=0.8`") from error
        self.model = model
        self.traced = traced if traced is not None else NNsight(model.hf)

    @classmethod
    def from_language_model(cls, language_model, name: str | None = None) -> NNsightRunner:
        """A runner over an existing nnsight ``LanguageModel`` (loaded now if it was still on the meta device)."""
        if not hasattr(language_model, "trace") or getattr(language_model, "tokenizer", None) is None:
            raise TypeError(
                f"from_language_model needs an nnsight LanguageModel (with a tokenizer), got {type(language_model).__name__}"
            )
        if getattr(language_model, "dispatched", True) is False:
            language_model.dispatch()  # real weights: the seam attaches to the loaded modules
        hf_model = language_model._module
        name = name or getattr(hf_model.config, "name_or_path", None) or "nnsight"
        return cls(Model(name, hf_model, language_model.tokenizer), traced=language_model)

    def capture(self, inputs, spec: CaptureSpec | None = None, interventions: Sequence[Intervention] = ()):
        """Statistics of one forward pass under a trace (default spec as ``Model.capture``)."""
        spec = spec or CaptureSpec()
        return self.run(inputs, spec, interventions)[1]

    def run(
        self,
        inputs,
        spec: CaptureSpec | None = None,
        interventions: Sequence[Intervention] = (),
        extra: Callable | None = None,
    ):
        """Forward under an nnsight trace. ``extra(traced)`` may read or edit modules inside the trace."""
        ids = self.model._ids(inputs).to(self.model.device)
        self.model.check_spec(spec, ids.shape[-1])
        with seam_run(
            self.model.hf,
            spec,
            interventions,
            adapter=self.model.adapter,
            shape=self.model.shape,
            meta={"runner": "nnsight"},
            backends=self.model.backends,
        ) as run:
            with self.traced.trace(ids):
                if extra is not None:
                    extra(self.traced)
                logits = self.traced.lm_head.output.save()
        if run.capture is not None:
            run.capture.tokens = self.model.tokens(ids)
        return torch.as_tensor(logits), run.capture
