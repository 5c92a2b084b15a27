"""TransformerLens 4.x runner: a ``TransformerBridge`` around the same weights, attention via the seam.

The bridge wraps the modules it is given in place, so it gets its own copy of the module tree whose
parameters and buffers are the loaded model's tensors (no extra memory): ``model.hf`` stays a plain HF
model for the other runners and for the user (``output_attentions`` and hooks keep working).

For RoPE families the bridge re-implements attention eagerly (it materialises every T x T pattern).
During a workbench run each bridge attention component instead delegates to its original HF module
(the bridge's own ``AttentionBridge.forward``: hook_in -> HF module -> hook_out), and the HF module
calls the seam. The override is per instance, owned by a context manager and removed on exit.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import types
from collections.abc import Sequence

import torch

from workbench.runners.hf import Model
from workbench.runners.seam_run import seam_run
from workbench.seam.interventions import Intervention
from workbench.seam.spec import CaptureSpec


@contextlib.contextmanager
def delegate_attention(bridge):
    """Make every bridge attention component call its HF module (and so the seam) for this block."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    patched = []
    try:
        for block in bridge.blocks:
            component = block.attn
            if (
                isinstance(component, AttentionBridge)
                and type(component).forward is not AttentionBridge.forward
            ):
                component.__dict__["forward"] = types.MethodType(AttentionBridge.forward, component)
                patched.append(component)
        yield
    finally:
        for component in patched:
            component.__dict__.pop("forward", None)


def shared_module_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A new module tree holding the very same parameter and buffer tensors as ``module``."""
    shared = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    return copy.deepcopy(module, shared)


class LensRunner:
    """Runs a workbench ``Model`` through a TransformerLens ``TransformerBridge``.

    ``LensRunner(model)`` builds a bridge over a loaded model; ``LensRunner.from_bridge(bridge)`` wraps the
    bridge a TransformerLens user already has::

        runner = wb.LensRunner.from_bridge(bridge)      # bridge = TransformerBridge.boot_transformers(...)
        table = runner.capture("The keeper kept a ledger.").head_table()
    """

    def __init__(self, model: Model):
        try:
            from transformer_lens.model_bridge import TransformerBridge
        except ImportError as error:  # pragma: no cover
            raise ImportError("the TransformerLens runner needs `pip install transformer-lens>=4`") from error
        self.model = model
        existing = getattr(model, "lens_bridge", None)
        if existing is not None:  # one bridge per loaded model
            self.bridge, self.hf = existing
            return
        self.hf = shared_module_copy(model.hf)
        self.bridge = TransformerBridge.boot_transformers(
            model.name if "/" in model.name else "workbench/" + model.name,
            hf_model=self.hf,
            tokenizer=model.tokenizer,
            device=str(model.device),
        )
        model.lens_bridge = (self.bridge, self.hf)

    @classmethod
    def from_bridge(cls, bridge, name: str | None = None) -> LensRunner:
        """A runner over an existing ``TransformerBridge`` (its HF model and tokenizer; no copy)."""
        hf_model = getattr(bridge, "original_model", None)
        if hf_model is None or getattr(bridge, "tokenizer", None) is None:
            raise TypeError(
                f"from_bridge needs a TransformerLens TransformerBridge (with original_model and tokenizer), "
                f"got {type(bridge).__name__}; for a HookedTransformer use wb.load_model(name) instead"
            )
        model = Model(name or getattr(bridge.cfg, "model_name", None) or "bridge", hf_model, bridge.tokenizer)
        model.lens_bridge = (bridge, hf_model)
        return cls(model)

    def capture(self, inputs, spec: CaptureSpec | None = None, interventions: Sequence[Intervention] = ()):
        """Statistics of one forward pass through the bridge (default spec as ``Model.capture``)."""
        spec = spec or CaptureSpec()
        return self.run(inputs, spec, interventions)[1]

    def run(self, inputs, spec: CaptureSpec | None = None, interventions: Sequence[Intervention] = ()):
        ids = self.model._ids(inputs).to(self.model.device)
        self.model.check_spec(spec, ids.shape[-1])
        with (
            seam_run(
                self.hf,
                spec,
                interventions,
                adapter=self.model.adapter,
                shape=self.model.shape,
                meta={"runner": "lens"},
                backends=self.model.backends,
            ) as run,
            delegate_attention(self.bridge),
        ):
            logits = self.bridge(ids)
        if run.capture is not None:
            run.capture.tokens = self.model.tokens(ids)
        return logits, run.capture
